"""Domain types of the retrieval service; no protobuf, no vendor types."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rag_common.domain import Condition, ScoredChunk
from rag_retrieval.lexical import SparseTerms


@dataclass(frozen=True)
class ChunkRecord:
    """One chunk ready to store: its id, vector and everything a search returns."""

    id: str
    tenant: str
    document_id: str
    chunk_index: int
    text: str
    vector: list[float]
    chunk_count: int  # chunks of the document version this chunk belongs to
    terms: SparseTerms = field(default_factory=SparseTerms.empty)  # BM25 weights, indexed text
    title: str = ""
    source: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    page: int = 0  # the page it starts on, from 1; 0 for a document without pages
    section: str = ""  # the innermost heading it sits under
    document: Mapping[str, Any] | None = None  # on chunk 0: what is stored of the document


@dataclass(frozen=True)
class RetrieveQuery:
    """A validated search request (the tenant comes from the caller's identity, not here)."""

    text: str = ""
    vector: tuple[float, ...] = ()
    top_k: int = 0
    conditions: tuple[Condition, ...] = ()
    score_threshold: float | None = None
    mode: str = ""  # "dense" or "hybrid"; empty: the service's default
    rerank: bool | None = None  # None: rerank when a reranker is configured


@dataclass(frozen=True)
class RetrieveResult:
    """Hits, best first, with where the time went and any degradation."""

    chunks: list[ScoredChunk]
    embed_ms: float
    search_ms: float
    rerank_ms: float = 0.0
    degraded: tuple[str, ...] = ()
