"""`make bench`'s figures as files: JSON of every run, and PNG plots of latency and
throughput by scenario and concurrency (matplotlib, no screen needed)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

from rag_bench import targets
from rag_bench.stats import Run

RESULTS = Path(__file__).parents[1] / "results"
STAGES = ("embed", "retrieve", "generate")


def run_figures(run: Run) -> dict:
    """One run as numbers: percentiles, throughput and per-stage medians."""
    return {
        "scenario": run.name,
        "concurrency": run.concurrency,
        "requests": len(run.total_ms),
        "p50_ms": run.percentile(50),
        "p95_ms": run.percentile(95),
        "p99_ms": run.percentile(99),
        "requests_per_s": run.rps,
        "stage_p50_ms": {s: run.percentile(50, s) for s in STAGES if run.stages.get(s)},
        **({"cpu_ms_per_request": run.cpu_ms} if run.cpu_ms else {}),
    }


def write(runs: Sequence[Run], summary: str, folder: Path = RESULTS) -> list[Path]:
    """bench.json and the plots in `folder`; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    document = {
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "runs": [run_figures(r) for r in runs],
        "targets": targets.as_json(),
        "summary": summary,
    }
    written = [folder / "bench.json"]
    written[0].write_text(json.dumps(document, indent=2))
    written.append(plot(runs, folder / "latency.png"))
    return written


def plot(runs: Sequence[Run], path: Path) -> Path:
    """Latency percentiles and throughput per scenario, one group of bars per concurrency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r.name for r in runs))
    concurrencies = sorted({r.concurrency for r in runs})
    by_key = {(r.name, r.concurrency): r for r in runs}
    figure, (latency, throughput) = plt.subplots(1, 2, figsize=(14, 5.5))
    width = 0.8 / len(concurrencies)
    for offset, concurrency in enumerate(concurrencies):
        xs = [i + offset * width for i in range(len(names))]
        runs_here = [by_key.get((n, concurrency)) for n in names]
        for q, alpha in ((99, 0.3), (95, 0.6), (50, 1.0)):
            latency.bar(
                xs,
                [r.percentile(q) if r else 0 for r in runs_here],
                width,
                alpha=alpha,
                color=f"C{offset}",
                label=f"c{concurrency} p{q}",
            )
        throughput.bar(
            xs,
            [r.rps if r else 0 for r in runs_here],
            width,
            color=f"C{offset}",
            label=f"concurrency {concurrency}",
        )
    for axes, title, unit in (
        (latency, "latency per request (p50 solid, p95, p99 paler)", "ms"),
        (throughput, "throughput", "requests/s"),
    ):
        axes.set_title(title)
        axes.set_ylabel(unit)
        axes.set_xticks([i + 0.4 - width / 2 for i in range(len(names))])
        axes.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
        axes.legend(fontsize=7)
    latency.set_yscale("log")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
