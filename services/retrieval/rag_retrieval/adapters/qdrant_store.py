"""VectorStore on qdrant-client: a Qdrant server by URL, or its local mode in a folder."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from rag_common.domain import Condition, ScoredChunk
from rag_common.errors import FailedPrecondition, Unavailable
from rag_retrieval import store
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
                )
                if self._index_payload:
                    await self._create_indexes()
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
            models.PointStruct(id=c.id, vector=list(c.vector), payload=store.chunk_payload(c))
            for c in chunks
        ]
        try:
            await self._client.upsert(self._collection, points=points, wait=True)
        except (UnexpectedResponse, ResponseHandlingException, OSError) as exc:
            raise _unavailable(exc) from exc

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
        """Refused: a Qdrant server is backed up with its own snapshot API."""
        raise _use_server_snapshots()

    async def restore_archive(self, archive: Path) -> int:
        """Refused: a Qdrant server is restored with its own snapshot API."""
        raise _use_server_snapshots()

    async def search(
        self,
        tenant: str,
        vector: Sequence[float],
        *,
        conditions: Sequence[Condition],
        top_k: int,
        score_threshold: float | None,
    ) -> list[ScoredChunk]:
        """Nearest chunks of `tenant` that meet every condition."""
        try:
            response = await self._client.query_points(
                self._collection,
                query=list(vector),
                query_filter=store.build_filter(models, tenant, conditions),
                limit=top_k,
                score_threshold=score_threshold,
                with_payload=True,
            )
        except (UnexpectedResponse, ResponseHandlingException, OSError) as exc:
            raise _unavailable(exc) from exc
        return [store.scored_chunk(p.payload or {}, p.score) for p in response.points]


def _use_server_snapshots() -> FailedPrecondition:
    return FailedPrecondition(
        "this store is a Qdrant server or qdrant-client's local mode: back it up with "
        "Qdrant's snapshot API (see docs/operations.md)",
        reason="BACKUP_NOT_SUPPORTED",
    )


def _unavailable(exc: Exception) -> Unavailable:
    log.error("qdrant call failed", exc_info=exc)
    return Unavailable("the vector store failed", reason="VECTOR_STORE_FAILED")
