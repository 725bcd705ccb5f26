"""The LLM router over the official OpenAI and Anthropic SDKs, against a local fake server."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest

from rag_common import context
from rag_common.breaker import BreakerPolicy, CircuitBreaker
from rag_common.domain import ScoredChunk
from rag_common.errors import Unavailable
from rag_generation.__main__ import build_model
from rag_generation.config import GenerationSettings, ProviderConfig
from rag_generation.generator import Generator, StreamEnd
from rag_generation.models import GenerationRequest
from rag_generation.providers import counts_against_provider
from rag_generation.routing import Route, TieringRule
from tests.support.fake_llm import FakeLLMServer

SOURCES = (ScoredChunk("fr", 0, 0.9, "Paris is the capital of France."),)
QUESTION = GenerationRequest("What is the capital of France?", SOURCES, max_tokens=32)


@pytest.fixture(scope="module")
def fake():
    server = FakeLLMServer().start()
    yield server
    server.stop()


@pytest.fixture
def llm(fake):
    fake.reset("ok")
    return fake


def remote(fake: FakeLLMServer, name: str, kind: str = "openai", **overrides) -> ProviderConfig:
    base_url = f"{fake.url}/v1" if kind == "openai" else fake.url
    fields = {
        "name": name,
        "kind": kind,
        "model": f"model-{name}",
        "base_url": base_url,
        "api_key": "test-key",
        "timeout_s": 2.0,
        "first_token_timeout_s": 1.0,
    }
    return ProviderConfig(**(fields | overrides))


async def make_generator(
    *configs: ProviderConfig,
    recovery_s: float = 30.0,
    seed: int = 1,
    tiering: TieringRule | None = None,
    fallback_reserve_s: float = 0.5,
) -> Generator:
    settings = GenerationSettings(providers=list(configs))
    policy = BreakerPolicy(consecutive_failures=3, recovery_s=recovery_s)
    routes = [
        Route(
            c,
            build_model(c, settings),
            CircuitBreaker(c.name, policy, counts=counts_against_provider),
        )
        for c in configs
    ]
    generator = Generator(
        routes,
        default_max_tokens=64,
        tiering=tiering,
        rng=random.Random(seed),
        fallback_reserve_s=fallback_reserve_s,
    )
    await generator.start()
    return generator


def calls_to(fake: FakeLLMServer, name: str) -> int:
    return sum(1 for r in fake.requests if r.body.get("model") == f"model-{name}")


async def test_openai_and_anthropic_answer_with_their_reported_usage_and_cost(llm):
    for kind in ("openai", "anthropic"):
        config = remote(llm, kind, kind, price_input_per_mtok=2.0, price_output_per_mtok=8.0)
        generator = await make_generator(config)
        answer = await generator.generate(QUESTION)
        assert answer.provider == kind
        assert answer.text == llm.text
        assert (answer.usage.input_tokens, answer.usage.output_tokens) == (42, 7)
        assert answer.usage.cost_usd == pytest.approx((42 * 2.0 + 7 * 8.0) / 1e6)
        assert answer.cited_sources == [1]
        await generator.close()


async def test_weights_are_honoured_over_many_calls(llm):
    generator = await make_generator(remote(llm, "light", weight=1), remote(llm, "heavy", weight=3))
    for _ in range(400):
        await generator.generate(QUESTION)
    share = calls_to(llm, "heavy") / 400
    # Expected 0.75; the binomial standard deviation over 400 calls is about 0.022.
    assert 0.65 <= share <= 0.85
    await generator.close()


async def test_a_hard_down_provider_opens_its_breaker_and_is_skipped(llm):
    generator = await make_generator(remote(llm, "down"), remote(llm, "up"), recovery_s=0.5)
    llm.model_modes["model-down"] = "error500"
    for _ in range(20):
        answer = await generator.generate(QUESTION)
        assert answer.provider == "up"  # no request fails while another provider is healthy
    assert generator.breaker_states()["down"] == "open"
    before = calls_to(llm, "down")
    for _ in range(10):
        await generator.generate(QUESTION)
    assert calls_to(llm, "down") == before  # open: not called at all
    del llm.model_modes["model-down"]  # the provider recovers
    await asyncio.sleep(0.6)  # past the recovery time: half-open, one probe decides
    answers = [await generator.generate(QUESTION) for _ in range(30)]
    assert generator.breaker_states()["down"] == "closed"
    assert "down" in {a.provider for a in answers}
    await generator.close()


async def test_fallback_goes_through_every_provider_to_the_extractive_last_resort(llm):
    generator = await make_generator(
        remote(llm, "first", weight=2),
        remote(llm, "second", weight=1),
        ProviderConfig(name="extractive", kind="extractive", weight=0),
    )
    llm.reset("unauthorized")
    answer = await generator.generate(QUESTION)
    assert answer.provider == "extractive"
    assert set(answer.failed_providers) == {"first", "second"}
    assert "Paris is the capital of France. [1]" in answer.text
    await generator.close()


@pytest.mark.parametrize("mode", ["unauthorized", "bad_request"])
async def test_400_and_401_are_never_retried(llm, mode):
    generator = await make_generator(remote(llm, "strict"), remote(llm, "backup", weight=0))
    llm.reset("ok", mode)
    answer = await generator.generate(QUESTION)
    assert answer.provider == "backup"
    assert calls_to(llm, "strict") == 1
    await generator.close()


@pytest.mark.parametrize("mode", ["error500", "malformed"])
async def test_server_errors_and_malformed_responses_are_retried(llm, mode):
    generator = await make_generator(remote(llm, "flaky"))
    llm.reset("ok", mode)
    answer = await generator.generate(QUESTION)
    assert answer.provider == "flaky" and answer.failed_providers == []
    assert calls_to(llm, "flaky") == 2
    await generator.close()


async def test_429_waits_as_long_as_retry_after_says(llm):
    generator = await make_generator(remote(llm, "busy"))
    llm.retry_after = 0.3
    llm.reset("ok", "ratelimit")
    answer = await generator.generate(QUESTION)
    assert answer.provider == "busy"
    first, second = llm.requests
    assert second.at - first.at >= 0.3
    await generator.close()


async def test_a_hanging_provider_times_out_and_the_next_answers(llm):
    generator = await make_generator(
        remote(llm, "slow", timeout_s=0.3), remote(llm, "quick", weight=0)
    )
    llm.hang_s = 2.0
    llm.reset("ok", "hang", "hang", "hang")
    answer = await generator.generate(QUESTION)
    assert answer.provider == "quick"
    assert "slow" in answer.failed_providers
    await generator.close()


async def test_a_provider_slower_than_the_request_leaves_the_fallback_time_to_answer(llm):
    # The slow provider's own limits (30 s, 10 s to a first token) are far beyond the 1.5 s
    # the request has left: it is cut off with the reserve still to go, and the fallback
    # answers. Without the reserve the fallback would find the deadline already passed.
    slow = remote(llm, "slow", timeout_s=30.0, first_token_timeout_s=10.0)
    generator = await make_generator(slow, remote(llm, "quick", weight=0))
    llm.hang_s = 3.0
    for streaming in (False, True):
        llm.reset("ok")
        llm.model_modes["model-slow"] = "hang"
        with context.tighter_deadline(1.5):
            if streaming:
                items = [item async for item in generator.stream(QUESTION)]
                answer = items[-1].generation
                assert "".join(i for i in items if isinstance(i, str)) == llm.text
            else:
                answer = await generator.generate(QUESTION)
        assert answer.provider == "quick" and answer.failed_providers == ["slow"]
    assert generator.usage.failures[("slow", "PROVIDER_TIMEOUT")] >= 2  # counted, as a hang is
    await generator.close()


async def test_with_less_time_than_twice_the_reserve_only_the_fallback_is_asked(llm):
    generator = await make_generator(
        remote(llm, "first"), remote(llm, "fallback", weight=0), fallback_reserve_s=0.5
    )
    with context.tighter_deadline(0.9):  # 0.4 s for "first" after the reserve: not tried
        answer = await generator.generate(QUESTION)
    assert answer.provider == "fallback" and answer.failed_providers == []
    assert calls_to(llm, "first") == 0
    assert generator.breaker_states()["first"] == "closed"  # skipped, not failed
    await generator.close()


async def test_stream_fails_over_before_the_first_token(llm):
    generator = await make_generator(
        remote(llm, "stuck", first_token_timeout_s=0.3), remote(llm, "fine", weight=0)
    )
    llm.hang_s = 2.0
    llm.reset("ok", "hang", "hang", "hang")
    items = [item async for item in generator.stream(QUESTION)]
    end = items[-1]
    assert isinstance(end, StreamEnd) and end.generation.provider == "fine"
    assert "".join(i for i in items if isinstance(i, str)) == llm.text
    assert not end.generation.partial
    await generator.close()


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_stream_breaking_after_the_first_token_ends_with_partial_text_and_an_error(llm, kind):
    generator = await make_generator(remote(llm, "breaks", kind), remote(llm, "spare", weight=0))
    llm.reset("break_stream")
    llm.pieces_before_break = 2
    items = []
    with pytest.raises(Unavailable) as caught:
        async for item in generator.stream(QUESTION):
            items.append(item)
    assert caught.value.reason == "STREAM_INTERRUPTED"
    end = items[-1]
    assert isinstance(end, StreamEnd) and end.generation.partial
    assert end.generation.text == "Paris is"
    assert calls_to(llm, "spare") == 0  # text already sent: no silent switch mid-answer
    await generator.close()


async def test_simple_questions_go_to_the_small_tier(llm):
    generator = await make_generator(
        remote(llm, "big", tier="main"),
        remote(llm, "mini", tier="small"),
        tiering=TieringRule(max_simple_chars=40, complex_words=("why", "explain")),
    )
    simple = await generator.generate(GenerationRequest("Capital of France?", SOURCES))
    assert (simple.provider, simple.tier) == ("mini", "small")
    hard = await generator.generate(GenerationRequest("Why is Paris the capital?", SOURCES))
    assert (hard.provider, hard.tier) == ("big", "main")
    await generator.close()


def test_plan_counts_first_choices_by_weight():
    from rag_generation.routing import plan

    routes = [
        Route(ProviderConfig(name=n, kind="extractive", weight=w), None, None)
        for n, w in (("a", 1), ("b", 2), ("c", 0))
    ]
    rng = random.Random(3)
    firsts = Counter(plan(routes, tier="main", rng=rng)[0].name for _ in range(3000))
    assert firsts["c"] == 0
    assert 0.62 <= firsts["b"] / 3000 <= 0.71  # expected 2/3
    assert next(r.name for r in plan(routes, tier="main", preferred="c", rng=rng)) == "c"
