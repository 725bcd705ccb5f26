"""The retrieval core: chunk, embed and store documents; search them inside one tenant."""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from rag_common.breaker import CircuitBreaker, guarded
from rag_common.document_ids import check_delete, check_document_id
from rag_common.domain import (
    Condition,
    DocumentInfo,
    DocumentInput,
    DocumentPage,
    ScoredChunk,
    TextEmbedder,
    UpsertResult,
)
from rag_common.errors import NotFound, Unavailable
from rag_common.filters import check_conditions
from rag_common.reasons import Degradation, Reason
from rag_common.security.identity import Identity
from rag_common.telemetry import tracing
from rag_retrieval import catalog, store, validation, vector_space
from rag_retrieval.chunking import Chunk, chunk_document
from rag_retrieval.lexical import Bm25Terms
from rag_retrieval.models import ChunkRecord, RetrieveQuery, RetrieveResult
from rag_retrieval.rerank import RerankStage
from rag_retrieval.store import LexicalQuery, VectorStore
from rag_retrieval.vector_space import VectorSpace, VectorSpaceGuard

log = logging.getLogger(__name__)

# Fixed namespace so that (tenant, document, chunk) always maps to the same point id.
_CHUNK_NAMESPACE = uuid.UUID("6f1d8f3e-2b7a-4c52-9a0e-3c1b5d7e9f21")


@dataclass(frozen=True)
class SearchPolicy:
    """How a search runs when its request does not say."""

    default_mode: str = "dense"  # or "hybrid"
    fusion_candidates: int = 50  # chunks each index contributes to fusion
    dense_weight: float = 1.0
    lexical_weight: float = 0.2
    rrf_k: int = 10


def chunk_id(tenant: str, document_id: str, chunk_index: int) -> str:
    """The deterministic point id of a chunk, so re-ingesting overwrites instead of adding."""
    return str(uuid.uuid5(_CHUNK_NAMESPACE, f"{tenant}\x00{document_id}\x00{chunk_index}"))


class Retriever:
    """Owns the vector store on behalf of every tenant."""

    def __init__(
        self,
        store: VectorStore,
        embedder: TextEmbedder,
        *,
        vector_size: int,
        chunk_size: int,
        chunk_overlap: int,
        max_document_chars: int,
        max_documents_per_call: int,
        default_top_k: int,
        max_top_k: int,
        embed_batch_size: int = 64,
        store_breaker: CircuitBreaker | None = None,
        search: SearchPolicy | None = None,
        rerank: RerankStage | None = None,
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._vector_size = vector_size
        self._chunk_size = chunk_size
        self._chunk_overlap = chunk_overlap
        self._max_document_chars = max_document_chars
        self._max_documents = max_documents_per_call
        self._default_top_k = default_top_k
        self._max_top_k = max_top_k
        self._embed_batch_size = embed_batch_size
        self.store_breaker = store_breaker or CircuitBreaker("vector_store")
        self._search = search or SearchPolicy()
        self._terms = Bm25Terms(chunk_size)
        self.rerank_stage = rerank
        self.vector_space = VectorSpaceGuard(store, dimension=vector_size)

    async def start(self) -> None:
        """Open the store, read which model made its vectors, and search it once, so the
        first caller does not pay for it."""
        await self._store.open()
        await self.vector_space.load()
        await self.ping()

    async def ping(self) -> None:
        """One search in a tenant no caller has: proves the store answers."""
        await self._store.search(
            "health-check",
            [0.0] * (self._vector_size - 1) + [1.0],
            conditions=(),
            top_k=1,
            score_threshold=None,
        )

    async def close(self) -> None:
        """Persist and close the store (and the reranker)."""
        await self._store.close()
        if self.rerank_stage is not None:
            await self.rerank_stage.close()

    async def upsert(
        self, documents: Sequence[DocumentInput], identity: Identity
    ) -> AsyncIterator[UpsertResult]:
        """Store documents in the caller's tenant, replacing earlier versions; yields each
        document's result once it is stored, in request order.

        Everything is validated and embedded before the first write, so bad input stores
        nothing. Each document is replaced atomically: its chunks are written in one store
        operation over the old ones (chunk ids depend only on the position), and only then
        are chunks the new version no longer has removed. A crash between the two leaves
        those extra chunks behind; searches ignore and remove them (see `_drop_stale`), so
        a document is always read as wholly its old or wholly its new version.
        """
        validation.check_documents(
            documents, max_documents=self._max_documents, max_chars=self._max_document_chars
        )
        per_document = [
            chunk_document(doc.text, self._chunk_size, self._chunk_overlap) for doc in documents
        ]
        # Both indexes see a chunk with its document's title and its section headings.
        texts = [
            chunk.indexed_text(doc.title)
            for doc, chunks in zip(documents, per_document, strict=True)
            for chunk in chunks
        ]
        vectors = iter(await self._embed_documents(texts))
        indexed = iter(texts)
        for doc, chunks in zip(documents, per_document, strict=True):
            stored = catalog.record(doc, identity.principal, time.time())
            records = [
                ChunkRecord(
                    id=chunk_id(identity.tenant, doc.id, index),
                    tenant=identity.tenant,
                    document_id=doc.id,
                    chunk_index=index,
                    text=chunk.text,
                    vector=next(vectors),
                    chunk_count=len(chunks),
                    terms=self._terms.document(next(indexed)),
                    title=doc.title,
                    source=doc.source,
                    metadata=dict(doc.metadata),
                    page=chunk.page,
                    section=chunk.section,
                    document=stored if index == 0 else None,
                )
                for index, chunk in enumerate(chunks)
            ]
            await guarded(self.store_breaker, functools.partial(self._store.upsert, records))
            await self._remove_chunks_from(identity.tenant, doc.id, len(records))
            yield UpsertResult(document_id=doc.id, chunks=len(records))

    async def list_documents(
        self,
        identity: Identity,
        *,
        page_size: int = 0,
        page_token: str = "",
        conditions: Sequence[Condition] = (),
    ) -> DocumentPage:
        """The caller's tenant's documents that meet `conditions`, newest first, one page."""
        check_conditions(conditions, "filters")
        heads = functools.partial(self._store.document_heads, identity.tenant, conditions)
        found = await guarded(self.store_breaker, heads)
        return catalog.page_of([store.document_info(h) for h in found], page_size, page_token)

    async def get_document(self, document_id: str, identity: Identity) -> DocumentInfo:
        """One document of the caller's tenant; NOT_FOUND when it has none by that id."""
        check_document_id(document_id, "document_id")
        heads = functools.partial(
            self._store.document_heads, identity.tenant, document_ids=[document_id]
        )
        found = await guarded(self.store_breaker, heads)
        if not found:
            raise NotFound(f"no document '{document_id}' in this tenant")
        return store.document_info(found[0])

    async def erase_tenant(self, identity: Identity) -> tuple[int, int]:
        """Delete every document of the caller's tenant: (documents, chunks) deleted."""
        heads = functools.partial(self._store.document_heads, identity.tenant)
        documents = len(await guarded(self.store_breaker, heads))
        erase = functools.partial(self._store.erase_tenant, identity.tenant)
        chunks = await guarded(self.store_breaker, erase)
        log.info("tenant erased", extra={"documents": documents, "chunks": chunks})
        return documents, chunks

    async def reindex(self) -> tuple[int, VectorSpace]:
        """Rebuild every stored vector with the embedding service's model now: (chunks
        rebuilt, the model). Searches and writes are refused until it ends; interrupted, the
        store still names the old model, and running it again finishes the work."""
        [probe], model = await self._embedder.embed_tagged(["reindex probe"], "document")
        space = VectorSpace(model, len(probe))
        self.vector_space.check_open()
        self.vector_space.rebuilding = True
        try:
            rebuilt = await self._rebuild(space)
            await guarded(self.store_breaker, functools.partial(self.vector_space.rerecord, space))
        finally:
            self.vector_space.rebuilding = False
        log.info("vectors rebuilt", extra={"chunks": rebuilt, "model": model})
        return rebuilt, space

    async def _rebuild(self, space: VectorSpace) -> int:
        rebuilt, offset = 0, None
        while True:
            page = functools.partial(
                self._store.chunks_page,
                offset,
                self._embed_batch_size,
                skip_tenant=vector_space.RECORD_TENANT,
            )
            chunks, offset = await guarded(self.store_breaker, page)
            if not chunks:
                return rebuilt
            texts = [_indexed_text(payload) for _, payload in chunks]
            vectors, model = await self._embedder.embed_tagged(texts, "document")
            if VectorSpace(model, len(vectors[0])) != space:  # the model changed again
                raise Unavailable(
                    "the embedding model changed during the rebuild; run it again",
                    reason=Reason.REINDEXING,
                )
            records = [
                store.chunk_record(point_id, payload, vector, self._terms.document(text))
                for (point_id, payload), vector, text in zip(chunks, vectors, texts, strict=True)
            ]
            await guarded(self.store_breaker, functools.partial(self._store.upsert, records))
            rebuilt += len(records)
            if offset is None:
                return rebuilt

    async def _remove_chunks_from(self, tenant: str, document_id: str, first: int) -> None:
        remove = functools.partial(self._store.delete, tenant, document_id, from_chunk=first)
        await guarded(self.store_breaker, remove)

    async def _embed_documents(self, texts: list[str]) -> list[list[float]]:
        # In slices the embedding service accepts; a long document has thousands of chunks.
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self._embed_batch_size):
            batch = texts[start : start + self._embed_batch_size]
            embedded, model = await self._embedder.embed_tagged(batch, "document")
            # Before anything is stored: vectors of another model never join the store's. Not
            # through the store's breaker: a refusal is the deployment's mismatch, not a
            # store failure, and must not make every tenant's searches wait.
            await self.vector_space.admit_write(VectorSpace(model, len(embedded[0])))
            vectors.extend(embedded)
        return vectors

    async def delete(self, document_ids: Sequence[str], identity: Identity) -> int:
        """Delete documents of the caller's tenant; returns how many chunks went."""
        check_delete(document_ids)
        unique_ids = list(dict.fromkeys(document_ids))
        delete = functools.partial(self._delete_documents, identity.tenant, unique_ids)
        return await guarded(self.store_breaker, delete)

    async def _delete_documents(self, tenant: str, document_ids: list[str]) -> int:
        deleted = 0
        for document_id in document_ids:
            deleted += await self._store.count(tenant, document_id)
            await self._store.delete(tenant, document_id)
        return deleted

    async def count(self, identity: Identity) -> int:
        """Chunks stored for the caller's tenant."""
        return await self._store.count(identity.tenant)

    async def retrieve(self, query: RetrieveQuery, identity: Identity) -> RetrieveResult:
        """Chunks of the caller's tenant closest to the question, best first: dense or
        hybrid, then reranked when a reranker is configured (or asked for)."""
        validation.check_query(query, max_top_k=self._max_top_k, dimension=self._vector_size)
        self.vector_space.check_open()
        embed_ms = 0.0
        vector = list(query.vector)
        if not vector:
            started = time.perf_counter()
            [vector], model = await self._embedder.embed_tagged([query.text], "query")
            self.vector_space.admit_search(VectorSpace(model, len(vector)))
            embed_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        top_k = query.top_k or self._default_top_k
        rerank = bool(query.text) and (
            self.rerank_stage is not None if query.rerank is None else query.rerank
        )
        stage = self.rerank_stage if rerank else None
        fetch = max(top_k, stage.policy.candidates) if stage else top_k
        lexical = self._lexical_query(query, fetch)
        with tracing.span(
            "store.search", top_k=fetch, filters=len(query.conditions), hybrid=lexical is not None
        ) as span:
            chunks = await guarded(
                self.store_breaker,
                lambda: self._store.search(
                    identity.tenant,
                    vector,
                    conditions=query.conditions,
                    top_k=fetch,
                    score_threshold=query.score_threshold,
                    lexical=lexical,
                ),
            )
            chunks = await self._drop_stale(identity.tenant, chunks)
            # Rank fusion ties often (ranks 2 and 3 in one index, 3 and 2 in the other):
            # break ties the same way every time, so one question always gets one order.
            chunks.sort(key=lambda c: (-c.score, c.document_id, c.chunk_index))
            tracing.annotate(span, hits=len(chunks), breaker=self.store_breaker.state.value)
        search_ms = (time.perf_counter() - started) * 1000
        if not rerank:
            return RetrieveResult(chunks[:top_k], embed_ms, search_ms)
        if stage is None:  # asked for, but no reranker is configured
            return RetrieveResult(
                chunks[:top_k], embed_ms, search_ms, degraded=(Degradation.NO_RERANK,)
            )
        reranked = await stage.rerank(query.text, chunks, top_k)
        degraded = () if reranked.reranked else (Degradation.NO_RERANK,)
        return RetrieveResult(reranked.chunks, embed_ms, search_ms, reranked.rerank_ms, degraded)

    def _lexical_query(self, query: RetrieveQuery, fetch: int) -> LexicalQuery | None:
        """The BM25 half of a hybrid search, or None for a dense one."""
        if (query.mode or self._search.default_mode) != "hybrid" or not query.text:
            return None
        policy = self._search
        return LexicalQuery(
            terms=self._terms.query(query.text),
            candidates=max(fetch, policy.fusion_candidates),
            dense_weight=policy.dense_weight,
            lexical_weight=policy.lexical_weight,
            rrf_k=policy.rrf_k,
        )

    async def _drop_stale(self, tenant: str, chunks: list[ScoredChunk]) -> list[ScoredChunk]:
        """Leave out, and remove, chunks past the end of their document's current version.

        Chunk 0 is rewritten with every version and records how many chunks it has, so a
        chunk at or past that count is left from a longer version whose replacement was cut
        off before its tail was removed. Only documents with a hit past chunk 0 are looked up.
        """
        suspects = sorted({c.document_id for c in chunks if c.chunk_index > 0})
        if not suspects:
            return chunks
        counts = await guarded(
            self.store_breaker, functools.partial(self._store.chunk_counts, tenant, suspects)
        )

        def current(chunk: ScoredChunk) -> bool:
            if chunk.chunk_index == 0:
                return True
            if chunk.document_id not in counts:  # no chunk 0: the document is being deleted
                return False
            count = counts[chunk.document_id]
            return count is None or chunk.chunk_index < count

        for document_id in sorted({c.document_id for c in chunks if not current(c)}):
            log.warning(
                "removing chunks left by an interrupted re-ingest",
                extra={"tenant": tenant, "document_id": document_id},
            )
            if counts.get(document_id):
                await self._remove_chunks_from(tenant, document_id, counts[document_id])
        return [c for c in chunks if current(c)]


def _indexed_text(payload: dict) -> str:
    """What search indexes of a stored chunk, as `Chunk.indexed_text` made it (from the
    innermost heading, which is what the payload keeps)."""
    section = payload.get("section", "")
    chunk = Chunk(payload.get("text", ""), (section,) if section else ())
    return chunk.indexed_text(payload.get("title", ""))
