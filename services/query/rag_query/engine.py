"""The query core: one latency budget across embed, retrieve and generate, degrading gracefully.

Retrieval (with the question's embedding) gets a share of the budget; generation gets what is
left. Retrieval that is late or down falls back to the sources of an earlier identical
question, else (late only) to no context; generation that fails or has no time left falls
back to the retrieved sources themselves. Each fallback is named in `Answer.degraded`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum

from rag_common import context
from rag_common.cache.local import LocalTTLCache
from rag_common.domain import ScoredChunk, TextEmbedder
from rag_common.errors import (
    DeadlineExceeded,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)
from rag_common.filters import check_conditions
from rag_common.reasons import Degradation, Reason
from rag_common.security.identity import Identity
from rag_common.telemetry import tracing
from rag_query.answer_cache import AnswerCache, answer_key, answer_scope
from rag_query.corpus import CorpusVersions
from rag_query.drain import Drain
from rag_query.fair_gate import FairGate, GateFull
from rag_query.maintenance import Maintenance
from rag_query.metrics import QueryStats
from rag_query.models import Answer, GeneratedText, QueryOptions, Question, Timings
from rag_query.ports import AnswerGenerator, ContextRetriever
from rag_query.semantic_cache import SemanticCache

log = logging.getLogger(__name__)

MAX_TOKENS_LIMIT = 4096
MIN_BUDGET_MS, MAX_BUDGET_MS = 100, 60_000


class CachedOnly(StrEnum):
    """Why only cached answers are whole right now (the cause on the `cached_only` event)."""

    OVERLOADED = "overloaded"  # misses refused at once (CACHED_ONLY), not queued
    DEPENDENCIES_DOWN = "dependencies_down"  # retrieval and generation both down


@dataclass(frozen=True)
class QueryPolicy:
    """Limits on questions and how the time budget is split."""

    max_question_chars: int = 2000
    default_top_k: int = 5
    max_top_k: int = 50
    default_budget_s: float = 5.0
    retrieval_share: float = 0.5
    min_generation_s: float = 0.3
    max_pipeline_queries: int = 64  # running and waiting; beyond it, cached answers only
    pipeline_concurrency: int = 16  # running at once; the others wait, tenants in turn
    # Places one tenant may hold while other tenants are asking too (0: all of them).
    tenant_share_when_shared: int = 0


@dataclass(frozen=True)
class SourcesFound:
    """First event of a streamed answer: the sources it is written from."""

    sources: list[ScoredChunk]


@dataclass
class _Progress:
    """What one question has gathered so far."""

    started: float  # when the request came in
    queued_ms: float  # how long it waited for a place in the pipeline
    sources: list[ScoredChunk] = field(default_factory=list)
    degraded: list[str] = field(default_factory=list)
    embed_ms: float = 0.0
    retrieve_ms: float = 0.0
    vector: list[float] | None = None
    cached: Answer | None = None  # a semantic cache hit: no retrieval, no generation


@dataclass(frozen=True)
class _Lookup:
    """What a question's first steps found: its corpus version, cache scope and any hit."""

    started: float
    version: str | None
    scope: _CacheScope | None
    mode: CachedOnly | None  # why only cached answers are whole now; None normally
    hit: Answer | None


@dataclass(frozen=True)
class _CacheScope:
    """Where one question's answer is cached: its semantic scope and its exact key."""

    scope: tuple
    key: str


class QueryEngine:
    """Answers a question over the caller's documents within its time budget."""

    def __init__(
        self,
        embedder: TextEmbedder,
        retriever: ContextRetriever,
        generator: AnswerGenerator,
        policy: QueryPolicy | None = None,
        *,
        maintenance: Maintenance | None = None,
        retrieval_cache: LocalTTLCache[list[ScoredChunk]] | None = None,
        answers: AnswerCache | None = None,
        versions: CorpusVersions | None = None,
        semantic: SemanticCache | None = None,
        drain: Drain | None = None,
        dependencies_down: Callable[[], bool] = lambda: False,
    ) -> None:
        self._embedder = embedder
        self._retriever = retriever
        self._generator = generator
        self._policy = policy or QueryPolicy()
        self._maintenance = maintenance or Maintenance()
        self._retrievals = retrieval_cache or LocalTTLCache(10_000, ttl_s=300.0)
        self._answers = answers
        # Without a shared store the versions live in this process, which still keys the
        # retrieval fallback: a delete through this process makes older retrievals unusable.
        self._versions = versions or CorpusVersions()
        self._semantic = semantic
        # Every wait of a question goes through it, so a shutdown turns them into fallbacks.
        self._drain = drain or Drain()
        # Whether retrieval and generation are both failing (their breakers open): then
        # nothing but a cached answer can be whole, and cache hits are flagged so.
        self._dependencies_down = dependencies_down
        # Questions past the caches: a few at a time, tenants taking turns for the rest.
        self._gate = FairGate(
            self._policy.pipeline_concurrency,
            self._policy.max_pipeline_queries,
            tenant_share=self._policy.tenant_share_when_shared,
        )
        self.stats = QueryStats()  # read by the metrics endpoint and the health signals

    @property
    def pipeline_in_flight(self) -> int:
        """Questions in or waiting for retrieval and generation (the query queue depth)."""
        return self._gate.admitted

    async def forget_tenant(self, tenant: str) -> None:
        """Drop everything this process and the shared caches hold of `tenant`'s content:
        answers, semantic-cache entries and the sources kept to stand in for a retrieval.
        Raises RedisError when the shared copies could not be deleted."""
        self._retrievals.forget(lambda key: key[0] == tenant)
        if self._semantic is not None:
            await self._semantic.forget_tenant(tenant)
        if self._answers is not None:
            await self._answers.forget_tenant(tenant)

    async def answer(self, question: Question, identity: Identity) -> Answer:
        """The answer, its sources, where the time went and any degradation."""
        lookup = await self._lookup(question, identity)
        if lookup.hit is not None:  # straight back: a cache hit is the hot path
            return lookup.hit
        # Closed here, in this call's context, when it returns early: left to the garbage
        # collector, the generator would be closed from another context, where undoing
        # the deadline it set fails.
        events = self._events(question, identity, lookup, streaming=False)
        async with contextlib.aclosing(events):
            async for event in events:
                if isinstance(event, Answer):
                    return event
        raise AssertionError("unreachable: every path ends with an Answer or an error")

    async def stream(
        self, question: Question, identity: Identity
    ) -> AsyncIterator[SourcesFound | str | Answer]:
        """SourcesFound, then pieces of the answer, then the whole Answer.

        Falls back like `answer` until the first piece of text; a failure after it ends the
        stream with the partial Answer and then the error.
        """
        lookup = await self._lookup(question, identity)
        if lookup.hit is not None:
            for event in _replay(lookup.hit):
                yield event
            return
        events = self._events(question, identity, lookup, streaming=True)
        async with contextlib.aclosing(events):
            async for event in events:
                yield event

    async def _lookup(self, question: Question, identity: Identity) -> _Lookup:
        """Checks, the corpus version, and the exact cache: what both calls start with."""
        self._maintenance.check()
        self._validate(question)
        started = time.perf_counter()
        version = await self._versions.current(identity.tenant)
        scope = self._cache_scope(question, identity, version)
        cached = None
        if scope is not None:
            with tracing.span("cache.answer") as span:
                cached = await self._answers.get(scope.key)
                tracing.annotate(span, hit=cached is not None)
        mode = self._cached_only_mode()
        if mode:
            tracing.event("cached_only", cause=mode)
        hit = self._from_cache(cached, started, mode) if cached is not None else None
        return _Lookup(started, version, scope, mode, hit)

    async def _events(
        self, question: Question, identity: Identity, lookup: _Lookup, *, streaming: bool
    ) -> AsyncIterator[SourcesFound | str | Answer]:
        """The one path of both calls past the exact cache: the semantic cache, retrieval,
        generation and every fallback.

        `streaming` only chooses how the generator is asked (pieces as they come, or one
        whole answer, which lets a provider that fails midway be replaced by the next).
        """
        started, version, scope, mode = lookup.started, lookup.version, lookup.scope, lookup.mode
        overloaded = mode is CachedOnly.OVERLOADED
        async with self._pipeline(question, identity.tenant, overloaded=overloaded) as queued_ms:
            progress = _Progress(started, queued_ms)
            await self._find_sources(progress, question, identity, version, scope, overloaded)
            if progress.cached is not None:
                for event in _replay(self._from_cache(progress.cached, started, mode)):
                    yield event
                return
            yield SourcesFound(progress.sources)
            generate_started = time.perf_counter()
            sent_text, answer = False, None
            try:
                if self._time_left() < self._policy.min_generation_s:
                    raise DeadlineExceeded("no time left for generation")
                # Enforced here too: the budget holds whatever the generator does.
                async with self._drain.timeout(self._time_left()):
                    # To its end, not only to the summary: a stream read to its end is what
                    # tells the client's breaker that the call succeeded.
                    generated = self._generate(question, progress.sources, identity, streaming)
                    async for item in generated:
                        if isinstance(item, GeneratedText):
                            answer = self._finish(item, progress, generate_started)
                        else:
                            sent_text = True
                            yield item
                if answer is None:
                    raise Unavailable("generation ended without an answer")
            except (TimeoutError, Unavailable, DeadlineExceeded, ResourceExhausted) as exc:
                if sent_text:
                    if isinstance(exc, TimeoutError):
                        raise DeadlineExceeded("the answer ran past its time budget") from None
                    raise
                generated = self._without_llm(progress, exc)
                yield generated.text
                answer = self._finish(generated, progress, generate_started)
            else:
                if not sent_text:  # a whole answer at once: the caller still gets its text
                    yield answer.text
        await self._remember(scope, question, progress, answer)
        self.stats.answered(answer)
        yield answer

    def _generate(
        self, question: Question, sources: list[ScoredChunk], identity: Identity, streaming: bool
    ) -> AsyncIterator[str | GeneratedText]:
        if streaming:
            return self._generator.stream(question.text, sources, question.options, identity)
        return self._whole_answer(question, sources, identity)

    async def _whole_answer(
        self, question: Question, sources: list[ScoredChunk], identity: Identity
    ) -> AsyncIterator[GeneratedText]:
        yield await self._generator.generate(question.text, sources, question.options, identity)

    def _cached_only_mode(self) -> CachedOnly | None:
        """Why only cached answers are whole right now (None when everything works).

        Overloaded: questions without a cached answer are refused at once rather than
        queued behind the pipeline. Retrieval and generation both down: their breakers
        already make every other path fail fast; cached answers are flagged as such.
        """
        if self._gate.full:
            return CachedOnly.OVERLOADED
        if self._dependencies_down():
            return CachedOnly.DEPENDENCIES_DOWN
        return None

    @contextlib.asynccontextmanager
    async def _pipeline(
        self, question: Question, tenant: str, *, overloaded: bool
    ) -> AsyncIterator[float]:
        """The question's time budget, and a place in the pipeline: waited for in turn with
        other tenants' questions, for at most the retrieval share of that budget; none while
        overloaded (then only a semantic cache hit can answer, and it needs none). Yields
        the milliseconds it waited."""
        with context.tighter_deadline(self._budget_s(question)):
            async with contextlib.AsyncExitStack() as stack:
                waiting = time.perf_counter()
                if not overloaded:
                    wait_s = self._time_left() * self._policy.retrieval_share
                    try:
                        await stack.enter_async_context(self._gate.place(tenant, wait_s))
                    except GateFull:
                        raise _refused_while_overloaded() from None
                yield (time.perf_counter() - waiting) * 1000

    def _cache_scope(
        self, question: Question, identity: Identity, version: str | None
    ) -> _CacheScope | None:
        """Where this question's answer is cached; None without caches or a known version."""
        if self._answers is None or version is None:
            return None
        scope = answer_scope(identity.tenant, version, question)
        return _CacheScope(scope, answer_key(scope, question))

    async def _semantic_hit(
        self, scope: _CacheScope | None, question: Question, vector: list[float]
    ) -> Answer | None:
        if scope is None or self._semantic is None:
            return None
        with tracing.span("cache.semantic") as span:
            hit = await self._semantic.find(scope.scope, question.text, vector)
            cached = await self._answers.get(hit.answer_key) if hit is not None else None
            found = hit is not None and cached is not None
            tracing.annotate(span, hit=found, similarity=hit.similarity if hit else None)
        if not found:
            return None
        return replace(
            cached, cache="semantic", cache_similarity=hit.similarity, cached_question=hit.question
        )

    async def _remember(
        self, scope: _CacheScope | None, question: Question, progress: _Progress, answer: Answer
    ) -> None:
        # Only whole answers: a degraded or partial one must not outlive its cause.
        if scope is None or answer.degraded or answer.generated.partial:
            return
        await self._answers.put(scope.key, answer)
        if self._semantic is not None and progress.vector is not None:
            await self._semantic.remember(scope.scope, question.text, progress.vector, scope.key)

    def _from_cache(self, cached: Answer, started: float, mode: CachedOnly | None) -> Answer:
        total_ms = (time.perf_counter() - started) * 1000
        answer = replace(
            cached,
            timings=Timings(total_ms=total_ms),
            request_id=context.request_id(),
            # The answer is whole, but the caller should know the system is degraded.
            degraded=[Degradation.CACHED_ONLY] if mode else [],
        )
        self.stats.answered(answer)
        tracing.annotate(cache=answer.cache, degraded=answer.degraded or None)
        return answer

    async def _find_sources(
        self,
        progress: _Progress,
        question: Question,
        identity: Identity,
        version: str | None,
        scope: _CacheScope | None,
        overloaded: bool,
    ) -> None:
        """The question's embedding, a semantic hit or its sources, into `progress`: each
        step within the retrieval share of the budget, a fallback when retrieval is late or
        down."""
        options = question.options
        if not options.top_k:
            options = replace(options, top_k=self._policy.default_top_k)
        key = _retrieval_key(question, options, identity, version)
        share = self._budget_s(question) * self._policy.retrieval_share
        try:
            with context.tighter_deadline(share) as granted:
                async with self._drain.timeout(granted):
                    await self._embed(progress, question)
                    progress.cached = await self._semantic_hit(scope, question, progress.vector)
                    if progress.cached is not None:
                        return
                    if overloaded:
                        raise _refused_while_overloaded()
                    await self._retrieve(progress, question, options, identity, key)
        except (TimeoutError, DeadlineExceeded, Unavailable) as exc:
            if overloaded:  # no semantic hit could be looked for: refuse at once
                raise _refused_while_overloaded() from None
            self._fall_back(progress, key, exc)

    async def _embed(self, progress: _Progress, question: Question) -> None:
        started = time.perf_counter()
        try:
            [progress.vector] = await self._embedder.embed([question.text], "query")
        finally:
            progress.embed_ms = (time.perf_counter() - started) * 1000

    async def _retrieve(
        self,
        progress: _Progress,
        question: Question,
        options: QueryOptions,
        identity: Identity,
        key: tuple | None,
    ) -> None:
        started = time.perf_counter()
        try:
            found = await self._retriever.retrieve(
                question.text, progress.vector, options, identity
            )
        finally:
            progress.retrieve_ms = (time.perf_counter() - started) * 1000
        progress.sources = found.chunks
        progress.degraded.extend(found.degraded)
        if key and not found.degraded:  # a fallback stands in for whole retrievals only
            self._retrievals.put(key, progress.sources)

    def _fall_back(self, progress: _Progress, key: tuple | None, exc: Exception) -> None:
        """Sources from an earlier identical question, or none when retrieval was late;
        re-raises when retrieval is down and nothing was kept."""
        late = not isinstance(exc, Unavailable)  # a timeout, not a dead dependency
        cached = self._retrievals.get(key) if key else None
        if cached is not None:
            progress.sources = cached
            progress.degraded.append(Degradation.RETRIEVAL_CACHED)
        elif late:
            progress.degraded.append(Degradation.NO_CONTEXT)
        else:
            raise exc
        log.warning(
            "retrieval degraded",
            extra={"degraded": progress.degraded, "cause": type(exc).__name__},
        )
        tracing.event("degraded", reason=progress.degraded[-1], cause=type(exc).__name__)

    def _without_llm(self, progress: _Progress, exc: Exception) -> GeneratedText:
        """The retrieved sources in place of an answer, when no provider could (or, for a
        tenant past its day's LLM budget, may) write one."""
        if isinstance(exc, ResourceExhausted) and exc.reason == Reason.LLM_BUDGET_EXHAUSTED:
            reason = Degradation.LLM_BUDGET_EXHAUSTED
        else:
            reason = Degradation.LLM_UNAVAILABLE
        if not progress.sources:
            # The tenant's LLM budget, or the caller's own time, ran out: say that, since
            # nothing failed that another try could find working.
            if reason == Degradation.LLM_BUDGET_EXHAUSTED or isinstance(exc, DeadlineExceeded):
                raise exc
            raise Unavailable(
                "no answer could be generated and no sources were found in time",
                reason=Reason.NO_ANSWER,
            )
        progress.degraded.append(reason)
        cause = type(exc).__name__
        log.warning("generation degraded", extra={"cause": cause, "degraded": reason})
        tracing.event("degraded", reason=reason, cause=cause)
        lines = ["No answer could be generated right now. The most relevant passages:"]
        for number, chunk in enumerate(progress.sources, start=1):
            snippet = " ".join(chunk.text.split())[:200]
            lines.append(f"[{number}] {chunk.title or chunk.document_id}: {snippet}")
        return GeneratedText("\n".join(lines), provider="none")

    def _finish(
        self, generated: GeneratedText, progress: _Progress, generate_started: float
    ) -> Answer:
        now = time.perf_counter()
        timings = Timings(
            embed_ms=progress.embed_ms,
            retrieve_ms=progress.retrieve_ms,
            generate_ms=(now - generate_started) * 1000,
            total_ms=(now - progress.started) * 1000,
            queued_ms=progress.queued_ms,
        )
        if progress.degraded:
            log.info("answer degraded", extra={"degraded": progress.degraded})
        tracing.annotate(
            cache="", degraded=progress.degraded or None, provider=generated.provider or None
        )
        return Answer(
            generated.text,
            progress.sources,
            generated,
            timings,
            context.request_id(),
            degraded=list(progress.degraded),
        )

    def _budget_s(self, question: Question) -> float:
        budget_ms = question.options.budget_ms
        budget = budget_ms / 1000 if budget_ms else self._policy.default_budget_s
        return context.remaining_seconds(budget)

    @staticmethod
    def _time_left() -> float:
        try:
            return context.remaining_seconds(float("inf"))
        except DeadlineExceeded:
            return 0.0

    def _validate(self, question: Question) -> None:
        policy = self._policy
        if not question.text.strip():
            raise InvalidArgument("question", "must not be empty")
        if len(question.text) > policy.max_question_chars:
            raise InvalidArgument(
                "question",
                f"{len(question.text)} characters, at most {policy.max_question_chars}",
            )
        options = question.options
        if not 0 <= options.top_k <= policy.max_top_k:
            raise InvalidArgument(
                "options.top_k", f"must be between 1 and {policy.max_top_k} (0 for the default)"
            )
        check_conditions(options.conditions, "options.filters")
        threshold = options.score_threshold
        if threshold is not None and not -1.0 <= threshold <= 1.0:
            raise InvalidArgument("options.score_threshold", "must be between -1 and 1")
        if not 0 <= options.max_tokens <= MAX_TOKENS_LIMIT:
            raise InvalidArgument("options.max_tokens", f"must be between 0 and {MAX_TOKENS_LIMIT}")
        if options.budget_ms and not MIN_BUDGET_MS <= options.budget_ms <= MAX_BUDGET_MS:
            raise InvalidArgument(
                "options.budget_ms", f"must be between {MIN_BUDGET_MS} and {MAX_BUDGET_MS}"
            )


def _replay(answer: Answer) -> tuple[SourcesFound, str, Answer]:
    """A finished answer as the events of a stream."""
    return SourcesFound(answer.sources), answer.text, answer


def sources_size(sources: list[ScoredChunk]) -> int:
    """About what a list of retrieved chunks weighs in memory, for byte-bounded caches."""
    return sum(
        200  # the objects themselves, the score and the ids
        + len(c.text)
        + len(c.title)
        + len(c.source)
        + sum(len(k) + len(v) for k, v in c.metadata.items())
        for c in sources
    )


def _retrieval_key(
    question: Question, options: QueryOptions, identity: Identity, version: str | None
) -> tuple | None:
    """Where a question's sources are kept for the fallback. Keyed by corpus version like
    every cache that serves content: a retrieval from before a delete must never stand in
    for one after it. Unknown version: no fallback."""
    if not version:
        return None
    return (
        identity.tenant,
        version,
        question.normalized,
        options.top_k,
        options.conditions,
        options.score_threshold,
        options.search_mode,
        options.rerank,
    )


def _refused_while_overloaded() -> ResourceExhausted:
    """The refusal of a question with no cached answer while the pipeline is full."""
    return ResourceExhausted(
        "too many questions at once: only cached answers are served right now; retry shortly",
        reason=Reason.CACHED_ONLY,
    )
