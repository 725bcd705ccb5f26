"""VectorStore on qdrant-client: a Qdrant server by URL, or its local mode in a folder."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from rag_common.domain import Condition, ScoredChunk
from rag_common.errors import FailedPrecondition, InvalidArgument, Unavailable
from rag_common.reasons import Reason
from rag_retrieval import store
from rag_retrieval.lexical import LEXICAL_VECTOR, SparseTerms
from rag_retrieval.models import ChunkRecord

log = logging.getLogger(__name__)


class QdrantStore:
    """One collection shared by all tenants, filtered by the indexed `tenant` field.

    One collection with a tenant index is Qdrant's recommended layout for many tenants;
    `is_tenant` lets a server co-locate each tenant's points.
    """

    def __init__(
        self,
        collection: str,
        vector_size: int,
        *,
        url: str = "",
        api_key: str = "",
        path: str = ":memory:",
    ) -> None:
        self._collection = collection
        self._vector_size = vector_size
        # Local mode scans linearly and warns that payload indexes do nothing there.
        self._index_payload = bool(url)
        self._snapshots = _Snapshots(url, api_key, collection) if url else None
        self._lexical = True  # False for a collection made before hybrid search
        if url:
            self._client = AsyncQdrantClient(url=url, api_key=api_key or None)
        elif path == ":memory:":
            self._client = AsyncQdrantClient(location=":memory:")
        else:
            self._client = AsyncQdrantClient(path=path)

    async def open(self) -> None:
        """Create the collection and its payload indexes unless they exist."""
        try:
            if not await self._client.collection_exists(self._collection):
                await self._client.create_collection(
                    self._collection,
                    vectors_config=models.VectorParams(
                        size=self._vector_size, distance=models.Distance.COSINE
                    ),
                    sparse_vectors_config={
                        LEXICAL_VECTOR: models.SparseVectorParams(modifier=models.Modifier.IDF)
                    },
                )
                if self._index_payload:
                    await self._create_indexes()
            else:
                info = await self._client.get_collection(self._collection)
                self._lexical = LEXICAL_VECTOR in (info.config.params.sparse_vectors or {})
                if not self._lexical:
                    log.warning(
                        "collection has no lexical index: searches are dense only until it "
                        "is recreated and the documents re-ingested",
                        extra={"collection": self._collection},
                    )
        except (UnexpectedResponse, ResponseHandlingException, OSError) as exc:
            raise _unavailable(exc) from exc

    async def _create_indexes(self) -> None:
        tenant_index = models.KeywordIndexParams(type="keyword", is_tenant=True)
        await self._client.create_payload_index(
            self._collection, store.TENANT, field_schema=tenant_index
        )
        await self._client.create_payload_index(
            self._collection, store.DOCUMENT_ID, field_schema=models.PayloadSchemaType.KEYWORD
        )

    async def close(self) -> None:
        """Close the client (local mode persists on close)."""
        await self._client.close()

    async def upsert(self, chunks: Sequence[ChunkRecord]) -> None:
        """Insert or replace chunks by id, waiting until they are searchable."""
        points = [
            models.PointStruct(id=c.id, vector=self._vectors(c), payload=store.chunk_payload(c))
            for c in chunks
        ]
        try:
            await self._client.upsert(self._collection, points=points, wait=True)
        except (UnexpectedResponse, ResponseHandlingException, OSError) as exc:
            raise _unavailable(exc) from exc

    def _vectors(self, chunk: ChunkRecord) -> dict[str, object] | list[float]:
        if not self._lexical:
            return list(chunk.vector)
        return {"": list(chunk.vector), LEXICAL_VECTOR: _sparse(chunk.terms)}

    async def delete(self, tenant: str, document_id: str, *, from_chunk: int = 0) -> None:
        """Delete a document's chunks from `from_chunk` on."""
        selector = store.build_filter(
            models, tenant, document_id=document_id, from_chunk=from_chunk
        )
        try:
            await self._client.delete(
                self._collection, points_selector=models.FilterSelector(filter=selector), wait=True
            )
        except (UnexpectedResponse, ResponseHandlingException, OSError) as exc:
            raise _unavailable(exc) from exc

    async def count(self, tenant: str, document_id: str | None = None) -> int:
        """Chunks stored for a tenant or one of its documents."""
        selector = store.build_filter(models, tenant, document_id=document_id)
        try:
            result = await self._client.count(self._collection, count_filter=selector, exact=True)
        except (UnexpectedResponse, ResponseHandlingException, OSError) as exc:
            raise _unavailable(exc) from exc
        return result.count

    async def document_heads(
        self, tenant: str, conditions: Sequence[Condition] = (), document_ids: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """Chunk 0's payload of each of the tenant's documents that meet `conditions`."""
        selector = store.build_filter(
            models, tenant, conditions, heads_of=list(document_ids), heads=True
        )
        heads: list[dict[str, Any]] = []
        offset = None
        try:
            while True:
                records, offset = await self._client.scroll(
                    self._collection,
                    scroll_filter=selector,
                    limit=store.SCROLL_PAGE,
                    offset=offset,
                    with_payload=store.HEAD_FIELDS,
                )
                heads.extend(r.payload or {} for r in records)
                if offset is None:
                    return heads
        except (UnexpectedResponse, ResponseHandlingException, OSError) as exc:
            raise _unavailable(exc) from exc

    async def chunks_page(
        self, offset: Any, limit: int, *, skip_tenant: str
    ) -> tuple[list[tuple[str, dict[str, Any]]], Any]:
        """A page of every tenant's chunks but `skip_tenant`'s, and the next page's offset."""
        try:
            records, after = await self._client.scroll(
                self._collection,
                scroll_filter=store.other_tenants(models, skip_tenant),
                limit=limit,
                offset=offset,
                with_payload=True,
            )
        except (UnexpectedResponse, ResponseHandlingException, OSError) as exc:
            raise _unavailable(exc) from exc
        return [(str(r.id), r.payload or {}) for r in records], after

    async def erase_tenant(self, tenant: str) -> int:
        """Delete every chunk of the tenant."""
        chunks = await self.count(tenant)
        selector = models.FilterSelector(filter=store.build_filter(models, tenant))
        try:
            await self._client.delete(self._collection, points_selector=selector, wait=True)
        except (UnexpectedResponse, ResponseHandlingException, OSError) as exc:
            raise _unavailable(exc) from exc
        return chunks

    async def chunk_counts(self, tenant: str, document_ids: Sequence[str]) -> dict[str, int | None]:
        """Each document's chunk count, from its chunk 0."""
        selector = store.build_filter(models, tenant, heads_of=list(document_ids))
        try:
            records, _ = await self._client.scroll(
                self._collection,
                scroll_filter=selector,
                limit=len(document_ids),
                with_payload=[store.DOCUMENT_ID, store.CHUNK_COUNT],
            )
        except (UnexpectedResponse, ResponseHandlingException, OSError) as exc:
            raise _unavailable(exc) from exc
        return store.chunk_counts_from([r.payload or {} for r in records])

    async def archive(self, destination: Path) -> None:
        """A snapshot of the collection, taken by the server and downloaded to `destination`."""
        if self._snapshots is None:
            raise _no_snapshots()
        try:
            await self._snapshots.download(destination)
        except httpx.HTTPError as exc:
            raise _unavailable(exc) from exc

    async def restore_archive(self, archive: Path) -> int:
        """Upload a snapshot; the server recovers the collection from it (or refuses it)."""
        if self._snapshots is None:
            raise _no_snapshots()
        try:
            await self._snapshots.upload(archive)
            result = await self._client.count(self._collection, exact=True)
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code in (400, 422):
                raise InvalidArgument("data", "the server refused this snapshot") from None
            raise _unavailable(exc) from exc
        except (httpx.HTTPError, UnexpectedResponse, ResponseHandlingException, OSError) as exc:
            raise _unavailable(exc) from exc
        return result.count

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
        selector = store.build_filter(models, tenant, conditions)
        if lexical and lexical.terms and self._lexical:
            similar = models.Prefetch(
                query=list(vector),
                filter=selector,
                limit=lexical.candidates,
                score_threshold=score_threshold,
            )
            matching = models.Prefetch(
                query=_sparse(lexical.terms),
                using=LEXICAL_VECTOR,
                filter=selector,
                limit=lexical.candidates,
                # With a threshold, BM25 ranks only chunks similar enough to pass it.
                prefetch=None if score_threshold is None else [similar],
            )
            search = {
                "prefetch": [similar, matching],
                "query": models.RrfQuery(
                    rrf=models.Rrf(
                        k=lexical.rrf_k, weights=[lexical.dense_weight, lexical.lexical_weight]
                    )
                ),
            }
        else:
            search = {
                "query": list(vector),
                "query_filter": selector,
                "score_threshold": score_threshold,
            }
        try:
            response = await self._client.query_points(
                self._collection, limit=top_k, with_payload=True, **search
            )
        except (UnexpectedResponse, ResponseHandlingException, OSError) as exc:
            raise _unavailable(exc) from exc
        return [store.scored_chunk(p.payload or {}, p.score) for p in response.points]


class _Snapshots:
    """Qdrant's snapshot REST API for one collection (qdrant-client only names snapshots;
    moving their bytes is plain HTTP, streamed so an archive never sits in memory)."""

    def __init__(self, url: str, api_key: str, collection: str) -> None:
        self._base = f"{url.rstrip('/')}/collections/{collection}/snapshots"
        self._headers = {"api-key": api_key} if api_key else {}

    async def download(self, destination: Path) -> None:
        async with httpx.AsyncClient(headers=self._headers, timeout=_SNAPSHOT_TIMEOUT) as http:
            created = await http.post(self._base, params={"wait": "true"})
            created.raise_for_status()
            name = created.json()["result"]["name"]
            try:
                async with http.stream("GET", f"{self._base}/{name}") as reply:
                    reply.raise_for_status()
                    with destination.open("wb") as sink:
                        async for piece in reply.aiter_bytes():
                            sink.write(piece)
            finally:  # the server keeps every snapshot until told otherwise
                await http.delete(f"{self._base}/{name}", params={"wait": "true"})

    async def upload(self, archive: Path) -> None:
        async with httpx.AsyncClient(headers=self._headers, timeout=_SNAPSHOT_TIMEOUT) as http:
            with archive.open("rb") as source:
                reply = await http.post(
                    f"{self._base}/upload",
                    params={"wait": "true", "priority": "snapshot"},
                    files={"snapshot": (archive.name, source, "application/octet-stream")},
                )
            reply.raise_for_status()


_SNAPSHOT_TIMEOUT = httpx.Timeout(3600.0, connect=10.0)


def _sparse(terms: SparseTerms) -> models.SparseVector:
    return models.SparseVector(indices=list(terms.indices), values=list(terms.values))


def _no_snapshots() -> FailedPrecondition:
    return FailedPrecondition(
        "qdrant-client's local mode keeps no snapshots: back up its folder instead",
        reason=Reason.BACKUP_NOT_SUPPORTED,
    )


def _unavailable(exc: Exception) -> Unavailable:
    log.error("qdrant call failed", exc_info=exc)
    return Unavailable("the vector store failed", reason=Reason.VECTOR_STORE_FAILED)
