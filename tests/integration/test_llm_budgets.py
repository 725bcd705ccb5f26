"""Daily LLM budgets per tenant, against the fake provider server and the real Redis."""

from __future__ import annotations

import contextlib

import pytest

from rag_common import context
from rag_common.errors import ResourceExhausted
from rag_common.security.identity import Identity
from rag_common.shared_redis import redis_client
from rag_generation.__main__ import build_generator
from rag_generation.config import GenerationSettings, ProviderConfig
from tests.integration.test_llm_routing import QUESTION, remote
from tests.support.fake_llm import FakeLLMServer
from tests.support.redis_servers import RedisServer

pytestmark = pytest.mark.slow

PRICES = {"price_input_per_mtok": 2.0, "price_output_per_mtok": 8.0}
# The fake server answers 42 input and 7 output tokens: 49 a paid answer.
TOKENS_PER_ANSWER = 49


@pytest.fixture(scope="module")
def fake():
    server = FakeLLMServer().start()
    yield server
    server.stop()


@contextlib.contextmanager
def as_tenant(tenant: str):
    context.set_identity(Identity(f"{tenant}-user", tenant, frozenset({"reader"})))
    try:
        yield
    finally:
        context.set_identity(None)


async def generator(fake, *, free: bool = True, redis_url: str = "", **limits):
    providers: list[ProviderConfig | str] = [remote(fake, "paid", **PRICES)]
    if free:
        providers.append("extractive")
    settings = GenerationSettings(providers=providers, redis_url=redis_url, **limits)
    made = build_generator(settings)
    await made.start()
    return made


async def answer_provider(made, tenant: str) -> str:
    with as_tenant(tenant):
        return (await made.generate(QUESTION)).provider


async def test_a_tenant_past_its_tokens_gets_free_providers_others_keep_the_paid_one(fake):
    made = await generator(fake, tenant_daily_tokens=2 * TOKENS_PER_ANSWER)
    assert [await answer_provider(made, "acme") for _ in range(3)] == [
        "paid",
        "paid",
        "extractive",  # 98 tokens spent: the budget is reached
    ]
    assert await answer_provider(made, "globex") == "paid"
    await made.close()


async def test_a_cost_budget_counts_dollars(fake):
    cost = (42 * 2.0 + 7 * 8.0) / 1_000_000
    made = await generator(fake, tenant_daily_cost_usd=cost * 1.5)
    assert [await answer_provider(made, "acme") for _ in range(3)] == [
        "paid",
        "paid",
        "extractive",
    ]
    await made.close()


async def test_without_a_free_provider_a_spent_tenant_is_told_when_it_resets(fake):
    made = await generator(fake, free=False, tenant_daily_tokens=1)
    assert await answer_provider(made, "acme") == "paid"
    with pytest.raises(ResourceExhausted) as refused:
        await answer_provider(made, "acme")
    assert refused.value.reason == "LLM_BUDGET_EXHAUSTED"
    assert 0 < refused.value.retry_after_s <= 86_400
    await made.close()


async def test_replicas_share_one_budget_through_redis(fake, tmp_path):
    server = RedisServer(tmp_path).start()
    limits = {"tenant_daily_tokens": 2 * TOKENS_PER_ANSWER, "redis_url": server.url}
    first, second = await generator(fake, **limits), await generator(fake, **limits)
    try:
        assert await answer_provider(first, "acme") == "paid"
        assert await answer_provider(second, "acme") == "paid"
        assert await answer_provider(first, "acme") == "extractive"
        assert await answer_provider(second, "acme") == "extractive"
        keys = await redis_client(server.url).keys("rag:llm-budget:*")
        assert len(keys) == 1 and b"{acme}" in keys[0]
    finally:
        await first.close()
        await second.close()
        server.stop()
