"""Documents' chunk counts remembered by the only process that writes a store, so a search
that needs them (to leave out chunks of an interrupted re-ingest) makes no second store call.

Only right where every write goes through this process: the embedded store, not a Qdrant
server that other replicas write to. Writes record what they stored, deletes and restores
forget; a count read from the store is kept only if no write finished while it was read.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence

from rag_retrieval.models import ChunkRecord

Counts = dict[str, int | None]
_ABSENT = object()  # the document has no chunk 0 (deleted, or being deleted)
_UNRECORDED = object()  # its chunk 0 records no count (written by an old version)
_UNKNOWN = object()  # not remembered


class ChunkCountMemory:
    """Up to `max_entries` documents' chunk counts, least recently used forgotten first."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._counts: OrderedDict[tuple[str, str], object] = OrderedDict()
        self._max_entries = max_entries
        self._writes = 0  # finished writes so far: a read that overlapped one is not kept

    async def counts(
        self,
        tenant: str,
        document_ids: Sequence[str],
        read: Callable[[list[str]], Awaitable[Counts]],
    ) -> Counts:
        """`VectorStore.chunk_counts`, reading from the store only what is not remembered."""
        found: Counts = {}
        unknown = []
        for document_id in document_ids:
            count = self._counts.get((tenant, document_id), _UNKNOWN)
            if count is _UNKNOWN:
                unknown.append(document_id)
                continue
            self._counts.move_to_end((tenant, document_id))
            if count is not _ABSENT:
                found[document_id] = None if count is _UNRECORDED else count
        if unknown:
            writes = self._writes
            read_counts = await read(unknown)
            found.update(read_counts)
            if writes == self._writes:
                for document_id in unknown:
                    self._remember(tenant, document_id, read_counts.get(document_id, _ABSENT))
        return found

    def written(self, chunks: Sequence[ChunkRecord]) -> None:
        """These chunks are stored: a chunk 0 says its document's count now."""
        self._writes += 1
        for chunk in chunks:
            if chunk.chunk_index == 0:
                self._remember(chunk.tenant, chunk.document_id, chunk.chunk_count)

    def forget(self, tenant: str, document_id: str) -> None:
        """The document's chunks changed in a way not known here (a failed write)."""
        self._writes += 1
        self._counts.pop((tenant, document_id), None)

    def forget_tenant(self, tenant: str) -> None:
        """Forget every document of `tenant` (its data was erased)."""
        self._writes += 1
        for key in [key for key in self._counts if key[0] == tenant]:
            del self._counts[key]

    def deleted(self, tenant: str, document_id: str) -> None:
        """The document is gone."""
        self._writes += 1
        self._remember(tenant, document_id, _ABSENT)

    def clear(self) -> None:
        """The whole store was replaced."""
        self._writes += 1
        self._counts.clear()

    def _remember(self, tenant: str, document_id: str, count: object) -> None:
        self._counts[(tenant, document_id)] = _UNRECORDED if count is None else count
        self._counts.move_to_end((tenant, document_id))
        while len(self._counts) > self._max_entries:
            self._counts.popitem(last=False)
