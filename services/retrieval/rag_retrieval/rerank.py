"""Reranking: a stage that reorders fused candidates by a reranker's relevance scores, within
a share of the time left, and falls back to the fused order (`no_rerank`) when it cannot."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import Protocol

from rag_common import context
from rag_common.breaker import BreakerState, CircuitBreaker, guarded
from rag_common.domain import ScoredChunk
from rag_common.errors import DeadlineExceeded, Unavailable
from rag_common.reasons import Degradation
from rag_common.telemetry import tracing

log = logging.getLogger(__name__)

_LOG_EVERY_S = 10.0  # while the reranker is skipped on every search, one warning per this


class Reranker(Protocol):
    """Scores how well each text answers a query: one score per text, in order."""

    name: str

    async def scores(self, query: str, texts: Sequence[str]) -> list[float]:
        """Relevance of each text to `query`, higher is better; raises Unavailable on failure."""
        ...

    async def close(self) -> None:
        """Release connections or the model."""
        ...


@dataclasses.dataclass(frozen=True)
class RerankPolicy:
    """How much of a search the reranker may take."""

    candidates: int = 30  # fused chunks sent to the reranker
    budget_share: float = 0.5  # of the time the call has left when reranking starts
    timeout_s: float = 2.0  # the most it may take, whatever the call has left
    max_concurrent: int = 8  # reranks in flight; past this, searches shed the stage


@dataclasses.dataclass(frozen=True)
class Reranked:
    """The chunks to return, and whether the reranker ordered them."""

    chunks: list[ScoredChunk]
    reranked: bool
    rerank_ms: float = 0.0


class RerankStage:
    """Runs one reranker behind its own breaker, deadline and concurrency cap."""

    def __init__(self, reranker: Reranker, policy: RerankPolicy | None = None) -> None:
        self.reranker = reranker
        self.policy = policy or RerankPolicy()
        self.breaker = CircuitBreaker("reranker")
        self._in_flight = 0
        self._skipped = 0  # searches not reranked since the last warning
        self._warned_at = -_LOG_EVERY_S

    async def rerank(self, query: str, candidates: list[ScoredChunk], top_k: int) -> Reranked:
        """The `top_k` best candidates by the reranker's scores (score = its score), or the
        first `top_k` in fused order when it is open, saturated, late or failing."""
        fallback = Reranked(candidates[:top_k], reranked=False)
        if not candidates:
            return Reranked([], reranked=True)
        if self.breaker.peek() is BreakerState.OPEN:
            return self._skip(fallback, "breaker open")
        if self._in_flight >= self.policy.max_concurrent:
            return self._skip(fallback, "shedding load")
        started = time.perf_counter()
        self._in_flight += 1
        try:
            budget = self._budget_s()
            with tracing.span("rerank", candidates=len(candidates), reranker=self.reranker.name):
                with context.tighter_deadline(budget) as granted:
                    async with asyncio.timeout(granted):
                        scores = await guarded(
                            self.breaker,
                            lambda: self.reranker.scores(query, [c.text for c in candidates]),
                        )
        except (TimeoutError, DeadlineExceeded, Unavailable) as exc:
            return self._skip(fallback, type(exc).__name__)
        finally:
            self._in_flight -= 1
        if len(scores) != len(candidates):
            return self._skip(fallback, "wrong number of scores")
        order = sorted(range(len(candidates)), key=lambda i: scores[i], reverse=True)
        chunks = [dataclasses.replace(candidates[i], score=float(scores[i])) for i in order]
        return Reranked(chunks[:top_k], True, (time.perf_counter() - started) * 1000)

    def _budget_s(self) -> float:
        try:
            left = context.remaining_seconds(self.policy.timeout_s / self.policy.budget_share)
        except DeadlineExceeded:
            return 0.0
        return min(self.policy.timeout_s, left * self.policy.budget_share)

    def _skip(self, fallback: Reranked, cause: str) -> Reranked:
        tracing.event("degraded", reason=Degradation.NO_RERANK, cause=cause)
        self._skipped += 1
        now = time.monotonic()
        if now - self._warned_at >= _LOG_EVERY_S:
            log.warning(
                "results not reranked",
                extra={"cause": cause, "reranker": self.reranker.name, "searches": self._skipped},
            )
            self._skipped, self._warned_at = 0, now
        return fallback

    async def close(self) -> None:
        """Close the reranker."""
        await self.reranker.close()
