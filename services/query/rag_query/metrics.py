"""What QueryService counts about its answers, and those counts as Prometheus families."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from prometheus_client.core import GaugeMetricFamily, Metric

from rag_common.health.signals import LATENCY_BUCKETS
from rag_common.telemetry.metrics import counter_family, histogram_family
from rag_common.telemetry.stats import Distribution
from rag_query.models import Answer

# "own": the orchestrator's own time, the whole less the wait and the downstream calls.
STAGES = ("queued", "embed", "retrieve", "generate", "own", "total")
_HOW = {"exact": "exact_hit", "semantic": "semantic_hit", "": "miss"}


class QueryStats:
    """Answers by how they were found, degradations by reason, pipeline time per stage."""

    def __init__(self) -> None:
        self.lookups: Counter[str] = Counter()  # exact_hit, semantic_hit, miss
        self.degraded: Counter[str] = Counter()
        self.stages = {stage: Distribution(LATENCY_BUCKETS) for stage in STAGES}

    def answered(self, answer: Answer) -> None:
        """Count one answer given (from a cache or the pipeline)."""
        self.lookups[_HOW[answer.cache]] += 1
        for reason in answer.degraded:
            self.degraded[reason] += 1
        if answer.cache:
            return
        timings = answer.timings
        for stage, ms in zip(
            STAGES,
            (
                timings.queued_ms,
                timings.embed_ms,
                timings.retrieve_ms,
                timings.generate_ms,
                timings.own_ms,
                timings.total_ms,
            ),
            strict=True,
        ):
            self.stages[stage].observe(ms / 1000)

    def hits_and_lookups(self) -> tuple[int, int]:
        """Answers served from a cache, and all answers (for the hit-rate signal)."""
        counts = dict(self.lookups)
        hits = counts.get("exact_hit", 0) + counts.get("semantic_hit", 0)
        return hits, hits + counts.get("miss", 0)


def query_families(stats: QueryStats, in_flight: Callable[[], int]) -> list[Metric]:
    """The query service's own families, read at scrape time."""
    service = ("query",)
    lookups = dict(stats.lookups)
    pipeline = GaugeMetricFamily(
        "rag_query_pipeline_in_flight",
        "Questions in retrieval and generation now (beyond the limit, only cached answers).",
        labels=["service"],
    )
    pipeline.add_metric(list(service), in_flight())
    return [
        counter_family(
            "rag_cache_requests",
            "Cache lookups by layer and result.",
            ["service", "layer", "result"],
            {(*service, "answer", result): count for result, count in lookups.items()},
        ),
        counter_family(
            "rag_degraded_answers",
            "Answers given in a degraded form, by reason.",
            ["service", "reason"],
            {(*service, reason): count for reason, count in dict(stats.degraded).items()},
        ),
        histogram_family(
            "rag_query_stage_duration_seconds",
            "Time per stage of answers that went through the pipeline (not cache hits).",
            ["service", "stage"],
            {(*service, stage): d for stage, d in stats.stages.items()},
        ),
        pipeline,
    ]
