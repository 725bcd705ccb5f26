"""VectorStore on qdrant-edge: Qdrant's engine embedded in this process, persisted on disk."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import shutil
import tarfile
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import qdrant_edge as qe

from rag_common.domain import Condition, ScoredChunk
from rag_common.errors import InvalidArgument, Unavailable
from rag_common.health.process import available_cpus
from rag_common.reasons import Reason
from rag_retrieval import store
from rag_retrieval.chunk_counts import ChunkCountMemory
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
    """One qdrant-edge shard in a folder.

    Writes run one at a time on one thread, in the order they were made. Searches, counts
    and scrolls run side by side on a few reader threads: the engine locks its own segments
    and releases the GIL while it searches, so concurrent searches neither queue behind one
    another nor behind a write (or an index build). Opening, closing and restoring swap the
    shard itself, so they wait for the reads in flight and hold new ones back. This process
    is the shard's only writer, so it remembers documents' chunk counts as it writes them.
    """

    def __init__(self, path: Path, vector_size: int, *, readers: int = 0) -> None:
        self._path = path
        self._vector_size = vector_size
        self._shard: Any = None
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qdrant-edge-write")
        readers = readers or min(8, max(2, math.ceil(available_cpus())))
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="qdrant-edge-read")
        self._swap = _Swap()
        self._counts = ChunkCountMemory()

    async def open(self) -> None:
        """Load the shard from its folder, or create it with the tenant index."""
        async with self._swap.exclusive():
            await self._write(self._open)

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
            op = qe.UpdateOperation.create_field_index(
                store.DOCUMENT_ID, qe.PayloadSchemaType.Keyword
            )
            self._shard.update(op)
        # Both idempotent, and bring stores made by earlier versions up to date. The tenant
        # index marked as such: Qdrant keeps each tenant's points together and plans every
        # search (always filtered by tenant) around it. The lexical index for hybrid search:
        # older chunks join it as they are re-ingested (dense search finds them meanwhile).
        tenant_index = qe.KeywordIndexParams(is_tenant=True)
        self._shard.update(qe.UpdateOperation.create_field_index(store.TENANT, tenant_index))
        self._shard.update(qe.UpdateOperation.create_sparse_vector(LEXICAL_VECTOR, qe.Modifier.Idf))
        log.info("edge store open", extra={"path": str(self._path)})

    async def close(self) -> None:
        """Flush to disk and close the shard."""
        if self._shard is not None:
            async with self._swap.exclusive():
                await self._write(self._close)
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)

    def _close(self) -> None:
        self._shard.flush()
        self._shard.close()
        self._shard = None

    async def upsert(self, chunks: Sequence[ChunkRecord]) -> None:
        """Insert or replace chunks by id."""
        points = [
            qe.Point(c.id, _vectors(c.vector, c.terms), store.chunk_payload(c)) for c in chunks
        ]
        try:
            await self._write(lambda: self._shard.update(qe.UpdateOperation.upsert_points(points)))
        except BaseException:
            for document in {(c.tenant, c.document_id) for c in chunks}:
                self._counts.forget(*document)
            raise
        self._counts.written(chunks)

    async def delete(self, tenant: str, document_id: str, *, from_chunk: int = 0) -> None:
        """Delete a document's chunks from `from_chunk` on."""
        selector = store.build_filter(qe, tenant, document_id=document_id, from_chunk=from_chunk)
        op = qe.UpdateOperation.delete_points_by_filter(selector)
        try:
            await self._write(lambda: self._shard.update(op))
        except BaseException:
            self._counts.forget(tenant, document_id)
            raise
        if from_chunk == 0:  # a tail removed leaves chunk 0's count as it was
            self._counts.deleted(tenant, document_id)

    async def count(self, tenant: str, document_id: str | None = None) -> int:
        """Chunks stored for a tenant or one of its documents."""
        selector = store.build_filter(qe, tenant, document_id=document_id)
        return await self._read(lambda: self._shard.count(qe.CountRequest(filter=selector)))

    async def document_heads(
        self, tenant: str, conditions: Sequence[Condition] = (), document_ids: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """Chunk 0's payload of each of the tenant's documents that meet `conditions`."""
        selector = store.build_filter(
            qe, tenant, conditions, heads_of=list(document_ids), heads=True
        )
        heads: list[dict[str, Any]] = []
        offset = None
        while True:
            request = qe.ScrollRequest(
                limit=store.SCROLL_PAGE,
                filter=selector,
                offset=offset,
                with_payload=store.HEAD_FIELDS,
            )
            records, offset = await self._read(lambda r=request: self._shard.scroll(r))
            heads.extend(r.payload for r in records)
            if offset is None:
                return heads

    async def chunks_page(
        self, offset: Any, limit: int, *, skip_tenant: str
    ) -> tuple[list[tuple[str, dict[str, Any]]], Any]:
        """A page of every tenant's chunks but `skip_tenant`'s, and the next page's offset."""
        request = qe.ScrollRequest(
            limit=limit,
            filter=store.other_tenants(qe, skip_tenant),
            offset=offset,
            with_payload=True,
        )
        records, after = await self._read(lambda: self._shard.scroll(request))
        return [(r.id, r.payload) for r in records], after

    async def erase_tenant(self, tenant: str) -> int:
        """Delete every chunk of the tenant."""
        chunks = await self.count(tenant)
        selector = qe.UpdateOperation.delete_points_by_filter(store.build_filter(qe, tenant))
        try:
            await self._write(lambda: self._shard.update(selector))
        finally:
            self._counts.forget_tenant(tenant)
        return chunks

    async def chunk_counts(self, tenant: str, document_ids: Sequence[str]) -> dict[str, int | None]:
        """Each document's chunk count, from its chunk 0 (remembered, or read)."""

        async def read(unknown: list[str]) -> dict[str, int | None]:
            request = qe.ScrollRequest(
                limit=len(unknown),
                filter=store.build_filter(qe, tenant, heads_of=unknown),
                with_payload=[store.DOCUMENT_ID, store.CHUNK_COUNT],
            )
            records, _ = await self._read(lambda: self._shard.scroll(request))
            return store.chunk_counts_from([r.payload for r in records])

        return await self._counts.counts(tenant, document_ids, read)

    async def optimize(self) -> None:
        """Build the indexes of everything written so far, now (after a bulk load)."""
        await self._write(self._shard.optimize)

    async def archive(self, destination: Path) -> None:
        """Flush and archive the shard folder, on the writer thread: no write can interleave."""
        await self._write(lambda: self._archive(destination))

    def _archive(self, destination: Path) -> None:
        self._shard.flush()
        with tarfile.open(destination, "w:gz") as archive:
            archive.add(self._path, arcname=_ARCHIVE_ROOT)

    async def restore_archive(self, archive: Path) -> int:
        """Swap the shard folder for the archive's, keeping the old one until the new loads."""
        async with self._swap.exclusive():
            try:
                return await self._write(lambda: self._restore(archive))
            finally:
                self._counts.clear()

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
        points = await self._read(lambda: self._shard.query(request))
        return [store.scored_chunk(p.payload, p.score) for p in points]

    async def _read(self, call: Callable[[], T]) -> T:
        async with self._swap.reading():
            return await self._run(self._readers, call)

    async def _write(self, call: Callable[[], T]) -> T:
        return await self._run(self._writer, call)

    @staticmethod
    async def _run(executor: ThreadPoolExecutor, call: Callable[[], T]) -> T:
        future = asyncio.get_running_loop().run_in_executor(executor, call)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # The call goes on in its thread whatever the caller does: wait for it, so that
            # a swap of the shard (which waits for this read or write) never runs beside it.
            if not future.done():
                await asyncio.wait([future])
            raise
        except ValueError as exc:
            # The engine refusing what it was given (a filter path, say) is input that
            # validation let through: the caller's mistake, never the store failing.
            log.warning("edge store refused its input", extra={"error": str(exc)[:200]})
            raise InvalidArgument("request", "the vector store cannot use this request") from exc
        except (OSError, RuntimeError) as exc:
            # qdrant-edge reports engine failures as RuntimeError/OSError.
            log.error("edge store failed", exc_info=exc)
            raise Unavailable("the vector store failed", reason=Reason.VECTOR_STORE_FAILED) from exc


class _Swap:
    """Reads side by side; a swap of the shard waits for them and holds new ones back."""

    def __init__(self) -> None:
        self._reads = 0
        self._no_reads = asyncio.Event()
        self._no_reads.set()
        self._no_swap = asyncio.Event()
        self._no_swap.set()
        self._one_swap = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[None]:
        """Hold off swaps while one read runs."""
        while not self._no_swap.is_set():  # checked again on waking: another swap may begin
            await self._no_swap.wait()
        self._reads += 1
        self._no_reads.clear()
        try:
            yield
        finally:
            self._reads -= 1
            if not self._reads:
                self._no_reads.set()

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """Run alone: once the reads in flight are done, and with new ones waiting."""
        async with self._one_swap:
            self._no_swap.clear()
            try:
                await self._no_reads.wait()
                yield
            finally:
                self._no_swap.set()


def _vectors(dense: Sequence[float], terms: SparseTerms) -> dict[str, Any]:
    """A point's named vectors: the dense one (unnamed) and its BM25 terms."""
    return {"": list(dense), LEXICAL_VECTOR: _sparse(terms)}


def _sparse(terms: SparseTerms) -> qe.SparseVector:
    return qe.SparseVector(list(terms.indices), list(terms.values))
