"""`rag backup`, `rag restore` and `rag reindex`: whole-store operations through
RetrievalService's port.

Each touches every tenant's chunks, so these are operator commands on the internal port, not
calls a tenant's API key can make.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

from rag.v1 import retrieval_service_pb2 as pb
from rag.v1 import retrieval_service_pb2_grpc as pb_grpc
from rag_cli.launcher import client_channel
from rag_common.security.credentials import OPERATOR_CLI, Credentials
from rag_common.shared_redis import redis_client
from rag_query.corpus import CorpusVersions

PIECE_BYTES = 1024 * 1024
ARCHIVE_GLOB = "rag-backup-*.tar.gz"


def archive_path(destination: Path) -> Path:
    """`destination` itself if it names a .tar.gz, else a new timestamped archive in it."""
    if destination.name.endswith(".tar.gz"):
        return destination
    destination.mkdir(parents=True, exist_ok=True)
    return destination / time.strftime("rag-backup-%Y%m%dT%H%M%SZ.tar.gz", time.gmtime())


def _operator(credentials: Credentials, method: str, timeout_s: float) -> list[tuple[str, str]]:
    # Whole-store archives hold every tenant's data: retrieval serves them to operators alone.
    return credentials.metadata(
        "retrieval",
        OPERATOR_CLI,
        method=f"/rag.v1.RetrievalService/{method}",
        lifetime_s=timeout_s,
    )


async def create_backup(
    target: str, destination: Path, keep: int, timeout_s: float, credentials: Credentials
) -> Path:
    """Stream an archive of the store at `target` into a file; keep the newest `keep`."""
    path = archive_path(destination)
    partial = path.with_name(path.name + ".partial")
    async with client_channel(target) as channel:
        stub = pb_grpc.RetrievalServiceStub(channel)
        with partial.open("wb") as sink:
            call = stub.CreateBackup(
                pb.CreateBackupRequest(),
                timeout=timeout_s,
                metadata=_operator(credentials, "CreateBackup", timeout_s),
            )
            async for message in call:
                sink.write(message.data)
    partial.rename(path)  # only a complete archive ever carries the final name
    if keep > 0:
        for old in sorted(path.parent.glob(ARCHIVE_GLOB))[:-keep]:
            old.unlink()
    return path


async def restore_backup(
    target: str, archive: Path, redis_url: str, timeout_s: float, credentials: Credentials
) -> int:
    """Replace the store at `target` with `archive`, then move every corpus version.

    The versions live in Redis when the query service shares its caches there: moving
    them there makes every cached answer from before the restore unreachable at once.
    """

    async def pieces() -> AsyncIterator[pb.RestoreBackupRequest]:
        with archive.open("rb") as source:
            while piece := source.read(PIECE_BYTES):
                yield pb.RestoreBackupRequest(data=piece)

    async with client_channel(target) as channel:
        stub = pb_grpc.RetrievalServiceStub(channel)
        reply = await stub.RestoreBackup(
            pieces(),
            timeout=timeout_s,
            metadata=_operator(credentials, "RestoreBackup", timeout_s),
        )
    await _move_every_version(redis_url)
    return reply.chunks


async def reindex(
    target: str, redis_url: str, timeout_s: float, credentials: Credentials
) -> pb.ReindexResponse:
    """Rebuild every vector of the store at `target` with the embedding model now, then move
    every corpus version: answers and semantic-cache entries found with the old model's
    vectors are not served after it."""
    async with client_channel(target) as channel:
        stub = pb_grpc.RetrievalServiceStub(channel)
        reply = await stub.Reindex(
            pb.ReindexRequest(),
            timeout=timeout_s,
            metadata=_operator(credentials, "Reindex", timeout_s),
        )
    await _move_every_version(redis_url)
    return reply


async def _move_every_version(redis_url: str) -> None:
    """Every tenant's corpus version moves, where the query service keeps them in Redis:
    every answer cached before is unreachable at once."""
    if redis_url:
        redis = redis_client(redis_url, timeout_s=5.0)
        try:
            await CorpusVersions(redis).bump_all()
        finally:
            await redis.aclose()
