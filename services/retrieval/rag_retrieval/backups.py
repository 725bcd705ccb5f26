"""Whole-store backups: an archive streamed out, an archive streamed back in.

Operator calls on the internal port only: an archive holds every tenant's chunks. The
archive passes through a file in the data folder (on the store's volume, not the root
filesystem, which is read-only in a container).
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from rag_common.errors import InvalidArgument
from rag_retrieval.store import VectorStore

PIECE_BYTES = 1024 * 1024  # per streamed message, well under gRPC's message limit


class Backups:
    """Creates and restores archives of one vector store."""

    def __init__(self, store: VectorStore, scratch_dir: Path, max_restore_bytes: int) -> None:
        self._store = store
        self._scratch_dir = scratch_dir
        self._max_restore_bytes = max_restore_bytes
        self._lock = asyncio.Lock()  # one backup or restore at a time

    async def create(self) -> AsyncIterator[bytes]:
        """The pieces of a consistent archive of the whole store, in order."""
        async with self._lock:
            with self._scratch_file() as archive:
                await self._store.archive(archive)
                with archive.open("rb") as source:
                    while piece := await asyncio.to_thread(source.read, PIECE_BYTES):
                        yield piece

    async def restore(self, pieces: AsyncIterator[bytes]) -> int:
        """Replace the store with the archive in `pieces`; returns the chunks it now holds."""
        async with self._lock:
            with self._scratch_file() as archive:
                received = 0
                with archive.open("wb") as sink:
                    async for piece in pieces:
                        received += len(piece)
                        if received > self._max_restore_bytes:
                            raise InvalidArgument(
                                "data", f"the archive is over {self._max_restore_bytes} bytes"
                            )
                        await asyncio.to_thread(sink.write, piece)
                if received == 0:
                    raise InvalidArgument("data", "no archive was sent")
                return await self._store.restore_archive(archive)

    @contextlib.contextmanager
    def _scratch_file(self) -> Iterator[Path]:
        self._scratch_dir.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=self._scratch_dir, suffix=".tar.gz")
        path = Path(name)
        try:
            with open(handle, "wb"):  # close the descriptor mkstemp opened
                pass
            yield path
        finally:
            path.unlink(missing_ok=True)
