"""The VectorStore port, and the Qdrant filter both Qdrant adapters build from it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rag_common.domain import Condition, DocumentInfo, Operator, ScoredChunk
from rag_retrieval.lexical import SparseTerms
from rag_retrieval.models import ChunkRecord

TENANT = "tenant"
DOCUMENT_ID = "document_id"
CHUNK_INDEX = "chunk_index"
CHUNK_COUNT = "chunk_count"
DOCUMENT = "document"  # on chunk 0: what is stored of the whole document
# What a document's record is read from: its chunk 0's payload without the chunk's text.
HEAD_FIELDS = [DOCUMENT_ID, CHUNK_COUNT, "title", "source", "metadata", DOCUMENT]
SCROLL_PAGE = 256


@dataclass(frozen=True)
class LexicalQuery:
    """The lexical half of a hybrid search and how it is fused with the dense half.

    Each index returns its best `candidates`; reciprocal rank fusion scores a chunk
    sum(weight / (rrf_k + rank)) over the indexes that found it.
    """

    terms: SparseTerms
    candidates: int
    dense_weight: float
    lexical_weight: float
    rrf_k: int


class VectorStore(Protocol):
    """Stores chunk vectors and searches them, always inside one tenant."""

    async def open(self) -> None:
        """Open or create the collection; idempotent."""
        ...

    async def close(self) -> None:
        """Persist what is pending and release the store."""
        ...

    async def upsert(self, chunks: Sequence[ChunkRecord]) -> None:
        """Insert or replace chunks by id."""
        ...

    async def delete(self, tenant: str, document_id: str, *, from_chunk: int = 0) -> None:
        """Delete a document's chunks whose index is `from_chunk` or more."""
        ...

    async def count(self, tenant: str, document_id: str | None = None) -> int:
        """Chunks stored for a tenant, or for one of its documents."""
        ...

    async def document_heads(
        self, tenant: str, conditions: Sequence[Condition] = (), document_ids: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """The payload of chunk 0 of every document of `tenant` that meets `conditions` (of
        those in `document_ids`, when given)."""
        ...

    async def erase_tenant(self, tenant: str) -> int:
        """Delete every chunk of `tenant`; returns how many there were."""
        ...

    async def chunks_page(
        self, offset: Any, limit: int, *, skip_tenant: str
    ) -> tuple[list[tuple[str, dict[str, Any]]], Any]:
        """(point id, payload) of up to `limit` chunks of every tenant but `skip_tenant`,
        from `offset` (None: the first); and the offset of the next page (None: no more)."""
        ...

    async def chunk_counts(self, tenant: str, document_ids: Sequence[str]) -> dict[str, int | None]:
        """Each stored document's chunk count, as its chunk 0 records it (None: not recorded).

        Documents without a chunk 0 (not stored, or being deleted) are left out.
        """
        ...

    async def archive(self, destination: Path) -> None:
        """Write a consistent .tar.gz of the whole store (every tenant) to `destination`.

        Raises FailedPrecondition where the store is backed up by other means.
        """
        ...

    async def restore_archive(self, archive: Path) -> int:
        """Replace the whole store with an `archive()`; returns the chunks it now holds.

        The store is unchanged when `archive` is not a valid archive.
        """
        ...

    async def search(
        self,
        tenant: str,
        vector: Sequence[float],
        *,
        conditions: Sequence[Condition],
        top_k: int,
        score_threshold: float | None,
        lexical: LexicalQuery | None = None,
    ) -> list[ScoredChunk]:
        """The `top_k` chunks of `tenant` closest to `vector` that meet every condition.

        With `lexical` (and terms in it), a hybrid search: the dense and the lexical index
        each search under the same filter and their rankings are fused (scores are then
        fusion scores); `score_threshold` still bounds every chunk's cosine similarity.
        """
        ...


def chunk_payload(chunk: ChunkRecord) -> dict[str, Any]:
    """What is stored beside a chunk's vector."""
    return {
        TENANT: chunk.tenant,
        DOCUMENT_ID: chunk.document_id,
        CHUNK_INDEX: chunk.chunk_index,
        CHUNK_COUNT: chunk.chunk_count,
        "text": chunk.text,
        "title": chunk.title,
        "source": chunk.source,
        "metadata": dict(chunk.metadata),
        "page": chunk.page,
        "section": chunk.section,
        **({DOCUMENT: dict(chunk.document)} if chunk.document else {}),
    }


def scored_chunk(payload: dict[str, Any], score: float) -> ScoredChunk:
    """Turn a stored payload and its score back into a ScoredChunk."""
    return ScoredChunk(
        document_id=payload[DOCUMENT_ID],
        chunk_index=int(payload[CHUNK_INDEX]),
        score=float(score),
        text=payload.get("text", ""),
        title=payload.get("title", ""),
        source=payload.get("source", ""),
        metadata=payload.get("metadata") or {},
        page=int(payload.get("page") or 0),
        section=payload.get("section") or "",
    )


def chunk_record(
    point_id: str, payload: dict[str, Any], vector: list[float], terms: SparseTerms
) -> ChunkRecord:
    """A stored chunk again as a record to write, with a new vector and terms."""
    return ChunkRecord(
        id=str(point_id),
        tenant=payload[TENANT],
        document_id=payload[DOCUMENT_ID],
        chunk_index=int(payload[CHUNK_INDEX]),
        text=payload.get("text", ""),
        vector=vector,
        chunk_count=int(payload.get(CHUNK_COUNT) or 0),
        terms=terms,
        title=payload.get("title", ""),
        source=payload.get("source", ""),
        metadata=payload.get("metadata") or {},
        page=int(payload.get("page") or 0),
        section=payload.get("section") or "",
        document=payload.get(DOCUMENT),
    )


def other_tenants(models: Any, tenant: str) -> Any:
    """A filter of every chunk but `tenant`'s."""
    match = models.MatchValue(value=tenant)
    return models.Filter(must_not=[models.FieldCondition(key=TENANT, match=match)])


def document_info(payload: dict[str, Any]) -> DocumentInfo:
    """A document's record from its chunk 0's payload."""
    stored = payload.get(DOCUMENT) or {}
    return DocumentInfo(
        document_id=payload[DOCUMENT_ID],
        title=payload.get("title", ""),
        source=payload.get("source", ""),
        media_type=stored.get("media_type", ""),
        chars=int(stored.get("chars", 0)),
        chunks=int(payload.get(CHUNK_COUNT) or 0),
        pages=int(stored.get("pages", 0)),
        content_sha256=stored.get("sha256", ""),
        ingested_at=float(stored.get("ingested_at", 0.0)),
        ingested_by=stored.get("ingested_by", ""),
        metadata=payload.get("metadata") or {},
    )


def chunk_counts_from(payloads: Sequence[dict[str, Any]]) -> dict[str, int | None]:
    """`VectorStore.chunk_counts` from the payloads of documents' chunk 0."""
    return {p[DOCUMENT_ID]: p.get(CHUNK_COUNT) for p in payloads}


def build_filter(
    models: Any,
    tenant: str,
    conditions: Sequence[Condition] = (),
    *,
    document_id: str | None = None,
    from_chunk: int = 0,
    heads_of: Sequence[str] = (),
    heads: bool = False,
) -> Any:
    """A Qdrant filter: the tenant always, then the caller's conditions, ANDed.

    `models` is `qdrant_client.models` or the `qdrant_edge` module: both spell filters the
    same way. The tenant condition comes first and request conditions can only narrow it:
    they address `metadata.<key>`, never the top-level tenant field. `heads_of` selects
    chunk 0 of each of those documents, `heads` chunk 0 of every document.
    """
    # qdrant-client calls its range type Range, qdrant-edge RangeFloat.
    range_type = getattr(models, "Range", None) or models.RangeFloat
    must = [models.FieldCondition(key=TENANT, match=models.MatchValue(value=tenant))]
    must_not = []
    if document_id is not None:
        match = models.MatchValue(value=document_id)
        must.append(models.FieldCondition(key=DOCUMENT_ID, match=match))
    if from_chunk > 0:
        must.append(models.FieldCondition(key=CHUNK_INDEX, range=range_type(gte=from_chunk)))
    if heads_of:
        must.append(models.FieldCondition(key=DOCUMENT_ID, match=models.MatchAny(any=heads_of)))
    if heads_of or heads:
        must.append(models.FieldCondition(key=CHUNK_INDEX, range=range_type(lt=1)))
    for condition in conditions:
        key = f"metadata.{condition.key}"
        if condition.operator in (Operator.EQUALS, Operator.NOT_EQUALS):
            match = models.MatchValue(value=condition.values[0])
        else:
            match = models.MatchAny(any=list(condition.values))
        target = must if condition.operator in (Operator.EQUALS, Operator.IN) else must_not
        target.append(models.FieldCondition(key=key, match=match))
    return models.Filter(must=must, must_not=must_not or None)
