"""A local model's measured pace sizes its prompt and answer to the time left."""

from __future__ import annotations

import pytest

from rag_common.breaker import CircuitBreaker
from rag_common.domain import ScoredChunk
from rag_generation.adapters.extractive import ExtractiveModel
from rag_generation.config import ProviderConfig
from rag_generation.generator import Generator
from rag_generation.models import Completion, GenerationRequest, Usage
from rag_generation.pace import MIN_ANSWER_TOKENS, Pace
from rag_generation.prompt import estimate_tokens
from rag_generation.routing import Route


class PacedModel:
    """A model with a pace that answers at once and keeps the prompts it was given."""

    name = "local"
    context_window = 8192

    def __init__(self, pace: Pace) -> None:
        self.pace = pace
        self.prompts = []

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    async def start(self) -> None:
        pass

    async def complete(self, prompt, timeout_s):
        self.prompts.append(prompt)
        return Completion("An answer [1].", Usage(1, 3))

    async def close(self) -> None:
        pass


async def generator(model: PacedModel) -> Generator:
    routes = [
        Route(ProviderConfig(name="local", kind="local"), model, CircuitBreaker("local")),
        Route(
            ProviderConfig(name="extractive", kind="extractive", weight=0),
            ExtractiveModel(),
            CircuitBreaker("extractive"),
        ),
    ]
    started = Generator(routes, default_max_tokens=256, fallback_reserve_s=0.5)
    await started.start()
    return started


SOURCES = tuple(
    ScoredChunk(f"doc-{n}", 0, 1.0, "A quay of grey stone shelters the fishing boats. " * 40)
    for n in range(5)
)


def test_the_pace_blends_new_measurements_and_ignores_ones_too_short_to_time():
    pace = Pace(read_per_s=100, write_per_s=10)
    pace.observe(read_tokens=200, read_s=1.0, written=20, write_s=1.0)
    assert (pace.read_per_s, pace.write_per_s) == pytest.approx((130, 13))
    pace.observe(read_tokens=3, read_s=0.001, written=1, write_s=0.001)
    assert (pace.read_per_s, pace.write_per_s) == pytest.approx((130, 13))
    # 8 of 10 s usable; 4.8 s kept for a short answer; 3.2 s of reading at 100 a second.
    assert Pace(100, 10).readable_tokens(10) == 320
    assert Pace(100, 10).writable_tokens(10, prompt_tokens=300) == 50


async def test_a_paced_model_gets_the_sources_it_can_read_and_the_answer_it_can_write():
    model = PacedModel(Pace(read_per_s=60, write_per_s=20))
    paced = await generator(model)
    answer = await paced.generate(GenerationRequest("Where are the boats?", SOURCES))
    [prompt] = model.prompts
    assert answer.provider == "local"
    # No deadline: the provider's 30 s; 24 s planned, 2.4 s of them for a short answer.
    assert 0 < len(prompt.sources) < len(SOURCES)
    assert model.count_tokens(prompt.text) <= (24 - MIN_ANSWER_TOKENS / 20) * 60
    assert prompt.max_tokens == min(256, int((24 - model.count_tokens(prompt.text) / 60) * 20))


async def test_a_paced_model_without_time_for_one_source_is_passed_over_uncounted():
    model = PacedModel(Pace(read_per_s=5, write_per_s=2))  # 48 tokens alone take 24 s
    routes = await generator(model)
    answer = await routes.generate(GenerationRequest("Where are the boats?", SOURCES))
    assert model.prompts == []
    assert (answer.provider, answer.failed_providers) == ("extractive", ["local"])
    assert routes.breaker_states()["local"] == "closed"
