"""Start the generation service: `python -m rag_generation`."""

from __future__ import annotations

from pathlib import Path

from rag_common.breaker import BreakerPolicy, CircuitBreaker
from rag_common.health.details import Dependency, Health
from rag_common.security.credentials import service_credentials
from rag_common.server.host import ServiceHost, run_service, service_main
from rag_common.shared_redis import redis_from_settings
from rag_generation.adapters.extractive import ExtractiveModel
from rag_generation.budgets import BudgetLimits, DailyBudgets
from rag_generation.config import GenerationSettings, ProviderConfig
from rag_generation.generator import Generator
from rag_generation.metrics import generation_families
from rag_generation.providers import ChatModel, counts_against_provider
from rag_generation.routing import Route, TieringRule
from rag_generation.servicer import servicers


def build_model(config: ProviderConfig, settings: GenerationSettings) -> ChatModel:
    """The adapter for one configured provider."""
    if config.kind == "extractive":
        return ExtractiveModel(name=config.name)
    if config.kind == "local":
        from rag_generation.adapters.llama_local import LlamaCppModel

        cache_dir = settings.local_cache_dir or Path.home() / ".cache" / "rag" / "gguf"
        return LlamaCppModel(
            config.model or settings.local_model_path,
            name=config.name,
            context_window=config.context_window,
            threads=settings.local_threads,
            temperature=settings.temperature,
            packaged_weights=settings.local_packaged_weights,
            cache_dir=Path(cache_dir),
        )
    if config.kind == "openai":
        from rag_generation.adapters.openai_chat import OpenAIChatModel

        return OpenAIChatModel(config, temperature=settings.temperature)
    from rag_generation.adapters.anthropic_chat import AnthropicChatModel

    return AnthropicChatModel(config)


def build_generator(settings: GenerationSettings) -> Generator:
    """A Generator over the configured providers, one breaker each."""
    policy = BreakerPolicy(
        failure_rate=settings.breaker_failure_rate,
        consecutive_failures=settings.breaker_consecutive_failures,
        recovery_s=settings.breaker_recovery_s,
    )
    routes = [
        Route(
            config,
            build_model(config, settings),
            CircuitBreaker(f"provider:{config.name}", policy, counts=counts_against_provider),
        )
        for config in settings.providers
    ]
    tiering = TieringRule(
        settings.simple_question_max_chars, tuple(settings.complex_question_words)
    )
    budgets = DailyBudgets(
        BudgetLimits(settings.tenant_daily_tokens, settings.tenant_daily_cost_usd),
        redis_from_settings(settings),
    )
    return Generator(
        routes,
        default_max_tokens=settings.default_max_tokens,
        tiering=tiering,
        budgets=budgets,
        fallback_reserve_s=settings.fallback_reserve_s,
    )


async def serve(settings: GenerationSettings) -> None:
    """Serve until SIGTERM."""
    generator = build_generator(settings)

    def provider_probe(name: str):
        async def check() -> tuple[Health, str]:
            if name in generator.provider_names:
                return Health.HEALTHY, "started"
            return Health.UNHEALTHY, "failed to start"

        return check

    dependencies = [
        Dependency(f"provider:{r.name}", provider_probe(r.name), r.breaker)
        for r in generator.routes
    ]
    host = ServiceHost(
        settings,
        servicers(generator),
        resolve_identity=service_credentials(settings, "generation").resolver(),
        name="generation",
        dependencies=dependencies,
    )
    host.metrics.read_at_scrape(lambda: generation_families(generator.usage))
    await run_service("generation", host, warm_up=generator.start, close=generator.close)


def main() -> None:
    """Read settings, configure logs and serve until SIGTERM."""
    service_main("generation", GenerationSettings, serve)


if __name__ == "__main__":
    main()
