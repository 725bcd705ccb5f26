"""Generation scenarios: local time to first token, and the cost of a dead provider."""

from __future__ import annotations

import functools
import time
from pathlib import Path

from rag_bench.stats import Run
from rag_common.breaker import BreakerPolicy, CircuitBreaker
from rag_common.domain import ScoredChunk
from rag_generation.__main__ import build_generator, build_model
from rag_generation.config import GenerationSettings, ProviderConfig
from rag_generation.generator import Generator
from rag_generation.models import GenerationRequest
from rag_generation.providers import counts_against_provider
from rag_generation.routing import Route

SOURCES = (
    ScoredChunk("handbook", 0, 0.8, "Employees get 30 days of paid vacation every year."),
    ScoredChunk("policy", 0, 0.6, "Vacation requests need a manager's approval."),
)
QUESTION = GenerationRequest("How many vacation days do employees get?", SOURCES, max_tokens=24)
PROSE = Path(__file__).parents[2] / "docs" / "configuration.md"  # real prose, real-sized prompts


async def local_first_token(requests: int, weights: str = "q8_0", *, long: bool = False) -> Run:
    """Time to first token of the local llama.cpp provider, streaming in-process, with the
    packaged model re-encoded to `weights` ('' as packaged). `long`: five 800-character
    sources per prompt, as a top_k of 5 brings, instead of three short ones."""
    settings = GenerationSettings(providers=["local"], local_packaged_weights=weights)
    generator = build_generator(settings)
    await generator.start()
    name = f"local {weights or 'as packaged'}{', long prompt' if long else ''}"
    run = Run(name, 1)
    started_all = time.perf_counter()
    try:
        for i in range(requests):
            # Different sources each time: llama.cpp reuses a cached prompt prefix, and a
            # repeated prompt would measure the cache, not prompt processing.
            sources = _long_sources(i) if long else _short_sources(i)
            request = GenerationRequest(QUESTION.question, sources, max_tokens=24)
            started = time.perf_counter()
            first = None
            async for item in generator.stream(request):
                if first is None and isinstance(item, str):
                    first = (time.perf_counter() - started) * 1000
            total = (time.perf_counter() - started) * 1000
            run.add(first or total, embed=0.0, retrieve=0.0, generate=total)
    finally:
        await generator.close()
    run.wall_s = time.perf_counter() - started_all
    return run


def _short_sources(i: int) -> tuple[ScoredChunk, ...]:
    note = ScoredChunk(f"note-{i}", 0, 0.9, f"Note {i}: the office closes at {i % 12 + 1} pm.")
    return (note, *SOURCES)


def _long_sources(i: int) -> tuple[ScoredChunk, ...]:
    text = _prose()
    start = i * 4000 % (len(text) - 4000)
    return tuple(
        ScoredChunk(f"prose-{i}", n, 0.9 - n / 10, text[start + 800 * n : start + 800 * (n + 1)])
        for n in range(5)
    )


@functools.cache
def _prose() -> str:
    return PROSE.read_text()


async def dead_provider_overhead(requests: int) -> list[Run]:
    """Latency with one of two providers answering HTTP 500, against only the healthy one.

    Both providers are OpenAI-compatible endpoints on a local fake server; the dead one's
    breaker opens within the first requests, after which it should cost (almost) nothing.
    """
    from tests.support.fake_llm import FakeLLMServer

    fake = FakeLLMServer().start()
    fake.model_modes["model-dead"] = "error500"

    def config(name: str) -> ProviderConfig:
        return ProviderConfig(
            name=name,
            kind="openai",
            model=f"model-{name}",
            base_url=f"{fake.url}/v1",
            timeout_s=2.0,
        )

    async def measure(name: str, configs: list[ProviderConfig]) -> Run:
        generator = _generator(configs)
        await generator.start()
        run = Run(name, 1)
        started_all = time.perf_counter()
        for _ in range(requests):
            started = time.perf_counter()
            await generator.generate(QUESTION)
            ms = (time.perf_counter() - started) * 1000
            run.add(ms, embed=0.0, retrieve=0.0, generate=ms)
        run.wall_s = time.perf_counter() - started_all
        await generator.close()
        return run

    try:
        baseline = await measure("1 healthy provider", [config("alive")])
        with_dead = await measure("+1 dead (HTTP 500)", [config("dead"), config("alive")])
    finally:
        fake.stop()
    return [baseline, with_dead]


def _generator(configs: list[ProviderConfig]) -> Generator:
    settings = GenerationSettings(providers=configs)
    routes = [
        Route(
            c,
            build_model(c, settings),
            CircuitBreaker(
                c.name,
                BreakerPolicy(consecutive_failures=3, recovery_s=30.0),
                counts=counts_against_provider,
            ),
        )
        for c in configs
    ]
    return Generator(routes, default_max_tokens=32)
