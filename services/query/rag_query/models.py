"""Domain types of the query service."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from rag_common.domain import Condition, ScoredChunk


@dataclass(frozen=True)
class QueryOptions:
    """How to answer; zero values mean the defaults."""

    top_k: int = 0
    conditions: tuple[Condition, ...] = ()
    score_threshold: float | None = None
    max_tokens: int = 0
    provider: str = ""
    budget_ms: int = 0
    search_mode: str = ""  # "dense" or "hybrid"; empty: retrieval's default
    rerank: bool | None = None  # None: rerank when retrieval has a reranker


@dataclass(frozen=True)
class RetrievedContext:
    """Chunks retrieval found, best first, and why they may be less than asked for."""

    chunks: list[ScoredChunk]
    degraded: tuple[str, ...] = ()


@dataclass(frozen=True)
class Search:
    """One question's search, as RetrievalService takes it."""

    question: str
    vector: Sequence[float]
    options: QueryOptions


@dataclass(frozen=True)
class Draft:
    """One question's whole answer to write, as GenerationService takes it."""

    question: str
    sources: Sequence[ScoredChunk]
    options: QueryOptions
    deadline: float | None  # the question's own (time.monotonic()), None when it has none


@dataclass(frozen=True)
class Question:
    """A question and its options."""

    text: str
    options: QueryOptions = field(default_factory=QueryOptions)

    @property
    def normalized(self) -> str:
        """The text as caches compare it: lower case, whitespace collapsed."""
        return " ".join(self.text.lower().split())


@dataclass(frozen=True)
class GeneratedText:
    """What the generation stage produced."""

    text: str
    provider: str
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    cited_sources: tuple[int, ...] = ()
    partial: bool = False
    failed_providers: tuple[str, ...] = ()  # of this request only: never cached


@dataclass(frozen=True)
class Timings:
    """Milliseconds per stage."""

    embed_ms: float = 0.0
    retrieve_ms: float = 0.0
    generate_ms: float = 0.0
    total_ms: float = 0.0
    queued_ms: float = 0.0  # waiting for a place in the pipeline

    @property
    def own_ms(self) -> float:
        """The orchestrator's own time: the whole request less its waits and downstream calls."""
        return self.total_ms - self.queued_ms - self.embed_ms - self.retrieve_ms - self.generate_ms


@dataclass(frozen=True)
class Answer:
    """An answer with the sources it was given, numbered from 1."""

    text: str
    sources: list[ScoredChunk]
    generated: GeneratedText
    timings: Timings
    request_id: str = ""
    degraded: list[str] = field(default_factory=list)
    cache: str = ""  # "exact" or "semantic" when served from a cache
    cache_similarity: float = 0.0
    cached_question: str = ""
