"""`rag advise`: recommendations from a running suite's metrics, each with its numbers.

The seed's cost optimizer, over what the services export (docs/operations.md): a low answer
cache hit rate, a provider that costs more than its share of the traffic, CPU that stays low,
and a p95 over budget that embedding time explains. Every rule reads totals since the
processes started or the health signals' sliding window, so one scrape is enough.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

# Every family the rules read: a test checks that the services really export each one.
READS = (
    "rag_cache_requests_total",
    "rag_llm_answers_total",
    "rag_llm_cost_usd_total",
    "rag_health_signal",
    "rag_query_stage_duration_seconds_sum",
    "rag_embedding_batch_size_count",
    "rag_embedding_batch_size_sum",
    "rag_embedding_queue_depth",
)
MIN_LOOKUPS = 50  # fewer answers than this say nothing about a hit rate
MIN_ANSWERS = 20  # per provider, before comparing their costs


@dataclass(frozen=True)
class Sample:
    """One exported number, from one process of one service."""

    service: str
    name: str
    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class Advice:
    """One recommendation and the figures it rests on."""

    rule: str
    message: str
    evidence: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Budget:
    """What the advisor holds the suite to."""

    p95_s: float = 2.0  # the seed's latency warning
    low_cpu: float = 0.30
    low_hit_rate: float = 0.30
    embed_share: float = 0.40  # of pipeline time, above which embedding explains a slow p95
    cost_ratio: float = 1.5  # a provider's cost share over its traffic share


class Metrics:
    """Samples scraped from every process, with sums over label matches."""

    def __init__(self, samples: Iterable[Sample]) -> None:
        self.samples = list(samples)

    @classmethod
    def parse(cls, scrapes: Iterable[tuple[str, str]]) -> Metrics:
        """From (service, exposition text) pairs, one per process."""
        samples = []
        for service, text in scrapes:
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    samples.append(Sample(service, sample.name, sample.labels, sample.value))
        return cls(samples)

    def total(self, name: str, service: str | None = None, **labels: str) -> float:
        """Sum of `name` over the processes of `service` (all when None) matching `labels`."""
        return sum(s.value for s in self._matching(name, service, labels))

    def by(self, label: str, name: str, service: str | None = None, **labels: str):
        """Sum of `name` per value of `label`."""
        sums: dict[str, float] = {}
        for s in self._matching(name, service, labels):
            sums[s.labels.get(label, "")] = sums.get(s.labels.get(label, ""), 0.0) + s.value
        return sums

    def per_process(self, name: str, service: str, **labels: str) -> list[float]:
        """`name` of each process of `service` (one sample per process)."""
        return [s.value for s in self._matching(name, service, labels)]

    def _matching(self, name: str, service: str | None, labels: Mapping[str, str]):
        for s in self.samples:
            if s.name != name or (service is not None and s.service != service):
                continue
            if all(s.labels.get(k) == v for k, v in labels.items()):
                yield s


def advise(metrics: Metrics, budget: Budget | None = None) -> list[Advice]:
    """Every rule's advice for these metrics (an empty list: nothing to change)."""
    budget = budget or Budget()
    rules = (_cache_hit_rate, _provider_cost, _idle_cpu, _slow_embedding)
    return [advice for rule in rules for advice in rule(metrics, budget)]


def _cache_hit_rate(metrics: Metrics, budget: Budget) -> list[Advice]:
    lookups = metrics.by("result", "rag_cache_requests_total", "query", layer="answer")
    total = sum(lookups.values())
    if total < MIN_LOOKUPS:
        return []
    exact, semantic = lookups.get("exact_hit", 0.0), lookups.get("semantic_hit", 0.0)
    rate = (exact + semantic) / total
    if rate >= budget.low_hit_rate:
        return []
    return [
        Advice(
            "cache_hit_rate",
            "Answer cache hit rate is low: keep answers longer "
            "(RAG_QUERY_ANSWER_CACHE_TTL_S), share them between replicas through Redis "
            "(RAG_QUERY_REDIS_URL), and let the semantic cache hold more questions "
            "(RAG_QUERY_SEMANTIC_CACHE_ENTRIES); its threshold matters little below 0.85, "
            "where the question guard decides.",
            {
                "hit rate": f"{rate:.1%} (advice below {budget.low_hit_rate:.0%})",
                "answers": f"{total:.0f}",
                "exact hits": f"{exact:.0f}",
                "semantic hits": f"{semantic:.0f}",
            },
        )
    ]


def _provider_cost(metrics: Metrics, budget: Budget) -> list[Advice]:
    answers = metrics.by("provider", "rag_llm_answers_total", "generation")
    costs = metrics.by("provider", "rag_llm_cost_usd_total", "generation")
    total_answers, total_cost = sum(answers.values()), sum(costs.values())
    if total_cost <= 0 or total_answers <= 0:
        return []
    per_answer = {p: costs.get(p, 0.0) / n for p, n in answers.items() if n >= MIN_ANSWERS}
    if len(per_answer) < 2:
        return []
    cheapest = min(per_answer, key=per_answer.__getitem__)
    advice = []
    for provider, unit in sorted(per_answer.items()):
        cost_share = costs.get(provider, 0.0) / total_cost
        traffic_share = answers[provider] / total_answers
        if provider == cheapest or cost_share < budget.cost_ratio * traffic_share:
            continue
        advice.append(
            Advice(
                "provider_cost",
                f"Provider '{provider}' costs more than its share of the traffic: move weight "
                f"to '{cheapest}' (RAG_GENERATION_PROVIDERS weights), or send simple questions "
                "to the small tier.",
                {
                    "cost share": f"{cost_share:.1%}",
                    "traffic share": f"{traffic_share:.1%}",
                    f"cost per answer ({provider})": f"${unit:.6f}",
                    f"cost per answer ({cheapest})": f"${per_answer[cheapest]:.6f}",
                },
            )
        )
    return advice


def _idle_cpu(metrics: Metrics, budget: Budget) -> list[Advice]:
    advice = []
    for service in sorted({s.service for s in metrics.samples}):
        cpu = metrics.per_process("rag_health_signal", service, signal="cpu")
        if not cpu or max(cpu) >= budget.low_cpu:
            continue
        replicas = len(cpu)
        change = (
            f"run {replicas - 1} replica{'s' if replicas > 2 else ''} instead of {replicas}"
            if replicas > 1
            else "give it a smaller CPU request"
        )
        advice.append(
            Advice(
                "idle_cpu",
                f"{service} uses little of its CPU: {change} (autoscaling lowers minReplicas "
                "no further than the chart's value).",
                {
                    "replicas": str(replicas),
                    "CPU per replica (last minute)": ", ".join(f"{c:.0%}" for c in cpu),
                    "advice below": f"{budget.low_cpu:.0%}",
                },
            )
        )
    return advice


def _slow_embedding(metrics: Metrics, budget: Budget) -> list[Advice]:
    p95 = metrics.per_process("rag_health_signal", "query", signal="p95_latency_s")
    if not p95 or max(p95) <= budget.p95_s:
        return []
    stage = "rag_query_stage_duration_seconds_sum"
    embed = metrics.total(stage, "query", stage="embed")
    total = metrics.total(stage, "query", stage="total")
    if total <= 0 or embed / total < budget.embed_share:
        return []
    # The question lane's figures: ingest batches say nothing about a question's wait.
    batches = metrics.total("rag_embedding_batch_size_count", "embedding", lane="query")
    texts = metrics.total("rag_embedding_batch_size_sum", "embedding", lane="query")
    queue = metrics.total("rag_embedding_queue_depth", "embedding", lane="query")
    replicas = len(metrics.per_process("rag_embedding_queue_depth", "embedding", lane="query"))
    return [
        Advice(
            "slow_embedding",
            "Questions are over their latency budget and most of the time goes to "
            "embedding: add embedding replicas, or let batches grow "
            "(RAG_EMBEDDING_MAX_BATCH, RAG_EMBEDDING_MAX_WAIT_MS) if they are small.",
            {
                "query p95 (last minute)": f"{max(p95):.2f} s (budget {budget.p95_s:.2f} s)",
                "embedding share of pipeline time": f"{embed / total:.0%}",
                "mean batch size": f"{texts / batches:.1f}" if batches else "n/a",
                "texts waiting": f"{queue:.0f}",
                "embedding replicas": str(replicas),
            },
        )
    ]


def scrape(url: str, timeout_s: float = 3.0) -> str:
    """The exposition text at a /metrics URL."""
    with urllib.request.urlopen(url, timeout=timeout_s) as reply:
        return reply.read().decode()
