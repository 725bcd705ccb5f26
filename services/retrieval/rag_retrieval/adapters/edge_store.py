"""VectorStore on qdrant-edge: Qdrant's engine embedded in this process, persisted on disk."""

from __future__ import annotations

import asyncio
import logging
import shutil
import tarfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import qdrant_edge as qe

from rag_common.domain import Condition, ScoredChunk
from rag_common.errors import InvalidArgument, Unavailable
from rag_retrieval import store
from rag_retrieval.lexical import LEXICAL_VECTOR, SparseTerms
from rag_retrieval.models import ChunkRecord

log = logging.getLogger(__name__)
T = TypeVar("T")
_ARCHIVE_ROOT = "qdrant-edge"  # the one folder inside a backup archive


def _extract(archive: Path, folder: Path) -> None:
    """Unpack a backup, refusing anything outside its one folder (paths, links, devices)."""
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            if member.name != _ARCHIVE_ROOT and not member.name.startswith(_ARCHIVE_ROOT + "/"):
                raise ValueError(f"unexpected entry {member.name[:80]!r}")
        tar.extractall(folder, filter="data")


class EdgeStore:
    """One qdrant-edge shard in a folder; every call runs on one worker thread.

    The shard is not documented as safe for concurrent use, and its calls take about a
    millisecond, so one thread serialises them without becoming the bottleneck.
    """

    def __init__(self, path: Path, vector_size: int) -> None:
        self._path = path
        self._vector_size = vector_size
        self._shard: Any = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qdrant-edge")

    async def open(self) -> None:
        """Load the shard from its folder, or create it with the tenant index."""
        await self._run(self._open)

    def _open(self) -> None:
        config = qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=self._vector_size, distance=qe.Distance.Cosine),
            wal_enabled=True,
        )
        if self._path.exists() and any(self._path.iterdir()):
            self._shard = qe.EdgeShard.load(str(self._path))
        else:
            self._path.mkdir(parents=True, exist_ok=True)
            self._shard = qe.EdgeShard.create(str(self._path), config)
            for field in (store.TENANT, store.DOCUMENT_ID):
                op = qe.UpdateOperation.create_field_index(field, qe.PayloadSchemaType.Keyword)
                self._shard.update(op)
        # Idempotent, and gives stores made before hybrid search their lexical index; their
        # chunks join it as they are re-ingested (dense search finds them meanwhile).
        self._shard.update(qe.UpdateOperation.create_sparse_vector(LEXICAL_VECTOR, qe.Modifier.Idf))
        log.info("edge store open", extra={"path": str(self._path)})

    async def close(self) -> None:
        """Flush to disk and close the shard."""
        if self._shard is not None:
            await self._run(self._close)
        self._executor.shutdown(wait=True)

    def _close(self) -> None:
        self._shard.flush()
        self._shard.close()
        self._shard = None

    async def upsert(self, chunks: Sequence[ChunkRecord]) -> None:
        """Insert or replace chunks by id."""
        points = [
            qe.Point(c.id, _vectors(c.vector, c.terms), store.chunk_payload(c)) for c in chunks
        ]
        await self._run(lambda: self._shard.update(qe.UpdateOperation.upsert_points(points)))

    async def delete(self, tenant: str, document_id: str, *, from_chunk: int = 0) -> None:
        """Delete a document's chunks from `from_chunk` on."""
        selector = store.build_filter(qe, tenant, document_id=document_id, from_chunk=from_chunk)
        op = qe.UpdateOperation.delete_points_by_filter(selector)
        await self._run(lambda: self._shard.update(op))

    async def count(self, tenant: str, document_id: str | None = None) -> int:
        """Chunks stored for a tenant or one of its documents."""
        selector = store.build_filter(qe, tenant, document_id=document_id)
        return await self._run(lambda: self._shard.count(qe.CountRequest(filter=selector)))

    async def chunk_counts(self, tenant: str, document_ids: Sequence[str]) -> dict[str, int | None]:
        """Each document's chunk count, from its chunk 0."""
        request = qe.ScrollRequest(
            limit=len(document_ids),
            filter=store.build_filter(qe, tenant, heads_of=list(document_ids)),
            with_payload=True,
        )
        records, _ = await self._run(lambda: self._shard.scroll(request))
        return store.chunk_counts_from([r.payload for r in records])

    async def optimize(self) -> None:
        """Build the indexes of everything written so far, now (after a bulk load)."""
        await self._run(self._shard.optimize)

    async def archive(self, destination: Path) -> None:
        """Flush and archive the shard folder, on the store's thread: no write can interleave."""
        await self._run(lambda: self._archive(destination))

    def _archive(self, destination: Path) -> None:
        self._shard.flush()
        with tarfile.open(destination, "w:gz") as archive:
            archive.add(self._path, arcname=_ARCHIVE_ROOT)

    async def restore_archive(self, archive: Path) -> int:
        """Swap the shard folder for the archive's, keeping the old one until the new loads."""
        return await self._run(lambda: self._restore(archive))

    def _restore(self, archive: Path) -> int:
        staging = self._path.with_name(self._path.name + ".restoring")
        previous = self._path.with_name(self._path.name + ".previous")
        for folder in (staging, previous):
            shutil.rmtree(folder, ignore_errors=True)
        try:
            _extract(archive, staging)
            restored = qe.EdgeShard.load(str(staging / _ARCHIVE_ROOT))
            restored.close()
        except (OSError, RuntimeError, tarfile.TarError, ValueError) as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise InvalidArgument("data", f"not a backup of this store: {exc}") from None
        self._shard.close()
        try:
            self._path.rename(previous)
            (staging / _ARCHIVE_ROOT).rename(self._path)
            self._shard = qe.EdgeShard.load(str(self._path))
        except (OSError, RuntimeError):
            if previous.exists():  # put the old store back as it was
                shutil.rmtree(self._path, ignore_errors=True)
                previous.rename(self._path)
            self._shard = qe.EdgeShard.load(str(self._path))
            raise
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(previous, ignore_errors=True)
        log.warning("vector store restored from a backup", extra={"path": str(self._path)})
        return self._shard.count(qe.CountRequest())

    async def search(
        self,
        tenant: str,
        vector: Sequence[float],
        *,
        conditions: Sequence[Condition],
        top_k: int,
        score_threshold: float | None,
        lexical: store.LexicalQuery | None = None,
    ) -> list[ScoredChunk]:
        """Nearest chunks of `tenant` that meet every condition; fused with the lexical
        index's best when `lexical` has terms."""
        selector = store.build_filter(qe, tenant, conditions)
        dense = qe.Query.Nearest(list(vector))
        if lexical and lexical.terms:
            similar = qe.Prefetch(
                limit=lexical.candidates,
                query=dense,
                filter=selector,
                score_threshold=score_threshold,
            )
            matching = qe.Prefetch(
                limit=lexical.candidates,
                query=qe.Query.Nearest(_sparse(lexical.terms), using=LEXICAL_VECTOR),
                filter=selector,
                # With a threshold, BM25 ranks only chunks similar enough to pass it.
                prefetches=None if score_threshold is None else [similar],
            )
            request = qe.QueryRequest(
                limit=top_k,
                prefetches=[similar, matching],
                query=qe.Fusion.Rrf(
                    k=lexical.rrf_k, weights=[lexical.dense_weight, lexical.lexical_weight]
                ),
                with_payload=True,
            )
        else:
            request = qe.QueryRequest(
                limit=top_k,
                query=dense,
                filter=selector,
                with_payload=True,
                score_threshold=score_threshold,
            )
        points = await self._run(lambda: self._shard.query(request))
        return [store.scored_chunk(p.payload, p.score) for p in points]

    async def _run(self, call: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, call)
        except ValueError as exc:
            # The engine refusing what it was given (a filter path, say) is input that
            # validation let through: the caller's mistake, never the store failing.
            log.warning("edge store refused its input", extra={"error": str(exc)[:200]})
            raise InvalidArgument("request", "the vector store cannot use this request") from exc
        except (OSError, RuntimeError) as exc:
            # qdrant-edge reports engine failures as RuntimeError/OSError.
            log.error("edge store failed", exc_info=exc)
            raise Unavailable("the vector store failed", reason="VECTOR_STORE_FAILED") from exc


def _vectors(dense: Sequence[float], terms: SparseTerms) -> dict[str, Any]:
    """A point's named vectors: the dense one (unnamed) and its BM25 terms."""
    return {"": list(dense), LEXICAL_VECTOR: _sparse(terms)}


def _sparse(terms: SparseTerms) -> qe.SparseVector:
    return qe.SparseVector(list(terms.indices), list(terms.values))
