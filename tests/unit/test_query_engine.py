"""The query core's budget and degradation rules, with in-memory doubles for its ports."""

from __future__ import annotations

import asyncio
import time

import pytest

from rag_common.cache.local import LocalTTLCache
from rag_common.cache.tiered import TieredCache
from rag_common.domain import ScoredChunk
from rag_common.errors import DeadlineExceeded, ResourceExhausted, Unavailable
from rag_common.security.identity import Identity
from rag_query.answer_cache import AnswerCache
from rag_query.drain import REPLY_MARGIN_S, Drain
from rag_query.engine import QueryEngine, QueryPolicy
from rag_query.maintenance import Maintenance
from rag_query.models import GeneratedText, QueryOptions, Question, RetrievedContext

ACME = Identity("p", "acme", frozenset({"reader"}))
CHUNK = ScoredChunk("handbook", 0, 0.9, "Employees get 30 days of vacation.", title="Handbook")


class Embedder:
    async def embed(self, texts, purpose):
        return [[1.0, 0.0] for _ in texts]


class Retriever:
    def __init__(self) -> None:
        self.delay_s = 0.0
        self.down = False

    async def retrieve(self, question, vector, options, identity):
        if self.down:
            raise Unavailable("retrieval is unavailable", reason="DEPENDENCY_UNAVAILABLE")
        await asyncio.sleep(self.delay_s)
        return RetrievedContext([CHUNK])


class Generator:
    def __init__(self) -> None:
        self.down = False
        self.spent = False  # the caller's tenant has used its day's LLM budget
        self.delay_s = 0.0
        self.calls = 0

    def _check(self) -> None:
        if self.down:
            raise Unavailable("every generation provider failed", reason="ALL_PROVIDERS_FAILED")
        if self.spent:
            raise ResourceExhausted("budget spent", reason="LLM_BUDGET_EXHAUSTED")

    async def generate(self, question, sources, options, identity):
        self.calls += 1
        await asyncio.sleep(self.delay_s)
        self._check()
        return GeneratedText("Thirty days [1].", "fake", cited_sources=(1,))

    async def stream(self, question, sources, options, identity):
        self._check()
        yield "Thirty"
        yield " days [1]."
        yield GeneratedText("Thirty days [1].", "fake")


@pytest.fixture
def parts():
    return Embedder(), Retriever(), Generator()


def engine(parts, **policy) -> QueryEngine:
    return QueryEngine(*parts, QueryPolicy(**({"default_budget_s": 1.0} | policy)))


def question(text: str = "How much vacation?", **options) -> Question:
    return Question(text, QueryOptions(**options))


async def test_a_normal_answer_is_not_degraded(parts):
    answer = await engine(parts).answer(question(), ACME)
    assert answer.degraded == [] and answer.text == "Thirty days [1]."


async def test_late_retrieval_answers_without_context_within_the_budget(parts):
    _, retriever, generator = parts
    retriever.delay_s = 5.0
    started = time.monotonic()
    answer = await engine(parts).answer(question(budget_ms=1000), ACME)
    assert time.monotonic() - started < 1.0 + 0.2  # the budget plus a small margin
    assert answer.degraded == ["no_context"] and answer.sources == []
    assert generator.calls == 1


async def test_late_retrieval_falls_back_to_an_earlier_identical_retrieval(parts):
    e = engine(parts)
    await e.answer(question("How much   VACATION?"), ACME)
    parts[1].delay_s = 5.0
    answer = await e.answer(question("how much vacation?", budget_ms=1000), ACME)
    assert answer.degraded == ["retrieval_cached"] and answer.sources == [CHUNK]
    other_tenant = Identity("q", "globex", frozenset({"reader"}))
    assert (await e.answer(question(budget_ms=1000), other_tenant)).degraded == ["no_context"]


async def test_dead_retrieval_without_a_cached_retrieval_is_unavailable(parts):
    parts[1].down = True
    with pytest.raises(Unavailable):
        await engine(parts).answer(question(), ACME)


@pytest.mark.parametrize("streaming", [False, True])
async def test_a_spent_llm_budget_answers_with_the_sources_and_says_why(parts, streaming):
    parts[2].spent = True
    e = engine(parts)
    if streaming:
        answer = [item async for item in e.stream(question(), ACME)][-1]
    else:
        answer = await e.answer(question(), ACME)
    assert answer.degraded == ["llm_budget_exhausted"]
    assert "[1] Handbook" in answer.text


async def test_dead_generation_answers_with_the_sources(parts):
    parts[2].down = True
    answer = await engine(parts).answer(question(), ACME)
    assert answer.degraded == ["llm_unavailable"]
    assert "[1] Handbook: Employees get 30 days of vacation." in answer.text
    assert answer.generated.provider == "none"


async def test_no_llm_call_when_too_little_time_is_left(parts):
    _, retriever, generator = parts
    retriever.delay_s = 0.35
    answer = await engine(parts, retrieval_share=0.9, min_generation_s=0.2).answer(
        question(budget_ms=500), ACME
    )
    assert answer.degraded == ["llm_unavailable"] and generator.calls == 0


async def test_slow_generation_is_cut_at_the_budget(parts):
    parts[2].delay_s = 5.0
    started = time.monotonic()
    answer = await engine(parts).answer(question(budget_ms=600), ACME)
    assert time.monotonic() - started < 0.6 + 0.2
    assert answer.degraded == ["llm_unavailable"]


async def test_stream_falls_back_to_sources_before_any_text(parts):
    parts[2].down = True
    items = [item async for item in engine(parts).stream(question(), ACME)]
    assert items[-1].degraded == ["llm_unavailable"]
    assert items[-2] == items[-1].text


async def test_maintenance_refuses_questions_with_its_message(parts):
    maintenance = Maintenance()
    e = QueryEngine(*parts, maintenance=maintenance)
    await maintenance.set(True, "upgrading until 14:00")
    with pytest.raises(Unavailable) as caught:
        await e.answer(question(), ACME)
    assert caught.value.reason == "MAINTENANCE" and "14:00" in caught.value.message
    await maintenance.set(False)
    assert (await e.answer(question(), ACME)).degraded == []


async def test_a_shutdown_turns_a_slow_answer_into_a_degraded_one_within_the_grace(parts):
    _, _, generator = parts
    generator.delay_s = 60.0
    drain = Drain()
    engine = QueryEngine(*parts, QueryPolicy(default_budget_s=30.0), drain=drain)
    pending = asyncio.ensure_future(engine.answer(question(), ACME))
    await asyncio.sleep(0.05)  # generating now
    started = time.monotonic()
    drain.begin(REPLY_MARGIN_S + 0.2)  # SIGTERM with this much grace
    answer = await asyncio.wait_for(pending, 5)
    assert time.monotonic() - started < 0.2 + 0.1
    assert answer.degraded == ["llm_unavailable"] and answer.sources == [CHUNK]
    # One that arrives while draining gets no time at all: a clear status, at once.
    with pytest.raises(Unavailable):
        await asyncio.wait_for(engine.answer(question("Another one?"), ACME), 1)


async def test_with_retrieval_and_generation_down_cached_answers_are_flagged(parts):
    _, retriever, generator = parts
    down = False
    engine = QueryEngine(
        *parts,
        QueryPolicy(default_budget_s=1.0),
        answers=AnswerCache(TieredCache(LocalTTLCache(100, 60.0))),
        dependencies_down=lambda: down,
    )
    whole = await engine.answer(question("How much vacation?"), ACME)
    down = retriever.down = generator.down = True
    cached = await engine.answer(question("How much vacation?"), ACME)
    assert cached.text == whole.text and cached.degraded == ["cached_only"]
    streamed = [e async for e in engine.stream(question("How much vacation?"), ACME)]
    assert streamed[-1].degraded == ["cached_only"]
    with pytest.raises(Unavailable):  # nothing cached for this one: a clear status
        await engine.answer(question("Something never asked?"), ACME)


async def test_an_overloaded_pipeline_serves_cache_hits_and_refuses_the_rest_at_once(parts):
    _, retriever, _ = parts
    engine = QueryEngine(
        *parts,
        QueryPolicy(default_budget_s=5.0, max_pipeline_queries=2),
        answers=AnswerCache(TieredCache(LocalTTLCache(100, 60.0))),
    )
    await engine.answer(question("How much vacation?"), ACME)
    retriever.delay_s = 1.0
    slow = [asyncio.ensure_future(engine.answer(question(f"Slow {n}?"), ACME)) for n in range(2)]
    await asyncio.sleep(0.05)  # both in the pipeline: it is full
    cached = await engine.answer(question("How much vacation?"), ACME)
    assert cached.degraded == ["cached_only"]
    with pytest.raises(ResourceExhausted) as refused:
        await engine.answer(question("Yet another?"), ACME)
    assert refused.value.reason == "CACHED_ONLY"
    assert all(not a.degraded for a in await asyncio.gather(*slow))
    assert not (await engine.answer(question("Now there is room?"), ACME)).degraded


@pytest.mark.parametrize("streaming", [False, True])
async def test_timings_split_the_wait_the_stages_and_the_engines_own_time(parts, streaming):
    parts[1].delay_s = 0.2
    e = engine(parts, pipeline_concurrency=1)

    async def ask(text: str):
        if streaming:
            return [item async for item in e.stream(question(text), ACME)][-1]
        return await e.answer(question(text), ACME)

    first, second = await asyncio.gather(ask("How much vacation?"), ask("How many holidays?"))

    assert first.timings.queued_ms < 50 and second.timings.queued_ms >= 150  # behind the first
    for answer in (first, second):
        t = answer.timings
        assert t.retrieve_ms >= 200 and t.embed_ms < 50
        assert t.total_ms >= t.queued_ms + t.retrieve_ms
        assert 0 <= t.own_ms < 50  # what is left once the wait and the stages are taken out


async def test_forgetting_a_tenant_drops_its_cached_answers_and_no_one_elses(parts):
    """What an erasure asks of the engine; an engine with no answer cache has nothing to drop."""
    globex = Identity("p", "globex", frozenset({"reader"}))
    cached = QueryEngine(*parts, answers=AnswerCache(TieredCache(LocalTTLCache(100, 60.0))))
    for who in (ACME, globex):
        await cached.answer(question("How much vacation?"), who)
    await cached.forget_tenant("acme")
    assert (await cached.answer(question("How much vacation?"), ACME)).cache == ""
    assert (await cached.answer(question("How much vacation?"), globex)).cache == "exact"
    await QueryEngine(*parts).forget_tenant("acme")


async def test_a_budget_too_short_for_any_stage_is_the_callers_deadline(parts):
    """Neither sources nor an answer within the caller's own budget: DEADLINE_EXCEEDED (its
    time), not UNAVAILABLE (nothing failed that a retry would find working)."""
    _, retriever, generator = parts
    retriever.delay_s = generator.delay_s = 0.5
    with pytest.raises(DeadlineExceeded):
        await engine(parts, default_budget_s=0.1).answer(question("Too quick?"), ACME)
