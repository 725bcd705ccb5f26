"""What the generation router counts (tokens, cost, answers, failures per provider), and
those counts as Prometheus families."""

from __future__ import annotations

from collections import Counter

from prometheus_client.core import Metric

from rag_common import context
from rag_common.telemetry.metrics import counter_family
from rag_generation.models import Generation


class UsageStats:
    """Tokens, cost and answers by provider and tenant; provider failures by reason."""

    def __init__(self) -> None:
        self.tokens: Counter[tuple[str, str, str]] = Counter()  # provider, tenant, kind
        self.cost_usd: Counter[tuple[str, str]] = Counter()
        self.answers: Counter[tuple[str, str]] = Counter()
        self.failures: Counter[tuple[str, str]] = Counter()  # provider, reason

    def generated(self, generation: Generation) -> None:
        """Count one answer (whole or partial) a provider wrote for the current caller."""
        key = (generation.provider, context.current_tenant())
        usage = generation.usage
        self.tokens[(*key, "input")] += usage.input_tokens
        self.tokens[(*key, "output")] += usage.output_tokens
        self.cost_usd[key] += usage.cost_usd
        self.answers[key] += 1

    def failed(self, provider: str, reason: str) -> None:
        """Count one request a provider failed (after its retries)."""
        self.failures[(provider, reason)] += 1


def generation_families(stats: UsageStats) -> list[Metric]:
    """The generation service's own families, read at scrape time."""
    service = "generation"
    # dict(): one C-level copy each, so the event loop counting meanwhile cannot break it.
    tokens, cost, answers = dict(stats.tokens), dict(stats.cost_usd), dict(stats.answers)
    failures = dict(stats.failures)
    return [
        counter_family(
            "rag_llm_tokens",
            "Tokens by provider, tenant and kind (input, output).",
            ["service", "provider", "tenant", "kind"],
            {(service, *key): value for key, value in tokens.items()},
        ),
        counter_family(
            "rag_llm_cost_usd",
            "Cost in USD by provider and tenant, at the configured prices.",
            ["service", "provider", "tenant"],
            {(service, *key): value for key, value in cost.items()},
        ),
        counter_family(
            "rag_llm_answers",
            "Answers written, by provider and tenant.",
            ["service", "provider", "tenant"],
            {(service, *key): value for key, value in answers.items()},
        ),
        counter_family(
            "rag_llm_provider_failures",
            "Requests a provider failed (after its retries) and the next one took, by reason.",
            ["service", "provider", "reason"],
            {(service, *key): value for key, value in failures.items()},
        ),
    ]
