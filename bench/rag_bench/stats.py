"""Latency percentiles and the table the benchmark prints."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Run:
    """Latencies of one scenario, end to end and per stage, in milliseconds."""

    name: str
    concurrency: int
    wall_s: float = 0.0
    total_ms: list[float] = field(default_factory=list)
    stages: dict[str, list[float]] = field(default_factory=dict)
    cpu_ms: dict[str, float] = field(default_factory=dict)  # per request, by process

    def add(self, total_ms: float, **stages: float) -> None:
        """Record one request."""
        self.total_ms.append(total_ms)
        for stage, ms in stages.items():
            self.stages.setdefault(stage, []).append(ms)

    def percentile(self, q: float, stage: str | None = None) -> float:
        """The q-th percentile of end-to-end latency, or of one stage."""
        values = self.total_ms if stage is None else self.stages[stage]
        return float(np.percentile(values, q))

    @property
    def rps(self) -> float:
        """Requests per second over the run's wall time."""
        return len(self.total_ms) / self.wall_s if self.wall_s else 0.0


def table(runs: list[Run]) -> str:
    """One row per run: end-to-end percentiles, throughput and per-stage medians."""
    header = (
        f"{'scenario':<22}{'conc':>5}{'reqs':>6}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
        f"{'req/s':>8}{'embed p50':>11}{'retr p50':>10}{'gen p50':>9}"
    )
    lines = [header, "-" * len(header)]
    for run in runs:
        stage = {s: run.percentile(50, s) for s in ("embed", "retrieve", "generate")}
        lines.append(
            f"{run.name:<22}{run.concurrency:>5}{len(run.total_ms):>6}"
            f"{run.percentile(50):>9.2f}{run.percentile(95):>9.2f}{run.percentile(99):>9.2f}"
            f"{run.rps:>8.1f}{stage['embed']:>11.2f}{stage['retrieve']:>10.2f}"
            f"{stage['generate']:>9.2f}"
        )
    return "\n".join(lines)
