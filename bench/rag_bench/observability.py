"""What tracing, metrics and TLS cost: the same queries on copies of the same stored
corpus, served side by side by a plain cluster, one exporting spans and scraped for
/metrics, and one with TLS on every port, which take turns.

Both as the chart deploys them. Metrics are always recorded (there is no switch to turn them
off); the traced run exports spans over OTLP/gRPC through the SDK's batch processor to a
local collector process, with the chart's default sampler (parent-based, a tenth of new
traces), and every process's /metrics is scraped every 15 s, the ServiceMonitor's interval.
The TLS run has every port on TLS and mTLS between services, over kept-alive channels.
Signed internal identity is on in every run.

Why side by side: clusters started one after another and measured in turn drift apart by
as much as what is measured (two plain ones differed by 16 % at concurrency 1, 21.2 against
18.2 ms). Taking turns in short rounds puts whatever the machine does meanwhile on every
cluster alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path

from rag_bench import targets
from rag_bench.stats import Run
from rag_cli.launcher import SERVICES, LocalCluster

PLAIN_LABEL = ", plain"
LABEL = ", traced + scraped"
TLS_LABEL = ", TLS + mTLS"
ROUNDS = 5  # turns each cluster takes
SCRAPE_INTERVAL_S = 15.0  # the chart's ServiceMonitor interval
CACHE_HIT_TARGET_MS = 2.0
TARGET = 1.1  # either, against neither, on the same stored corpus
MISS, HIT, ECHO = "grpc (4 services)", "grpc, cache hit", "grpc echo (yardstick)"
TARGET_AT = {LABEL: (1,), TLS_LABEL: (1, 8)}  # the concurrencies each target is read at


def tracing_env(collector_port: int) -> dict[str, str]:
    """The services' tracing settings as the chart's defaults set them, to a local collector."""
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector_port}",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
    }


def copy_of(data_dir: Path, into: Path) -> Path:
    """A copy of a stopped cluster's stored corpus (not its logs), for another cluster."""
    shutil.copytree(data_dir, into, ignore=shutil.ignore_patterns("logs", "spans"))
    return into


async def side_by_side(
    clusters: dict[str, LocalCluster],
    turn: Callable[[LocalCluster, str, int], Awaitable[list[Run]]],
    rounds: int = ROUNDS,
) -> list[Run]:
    """Start every cluster (by label), then take `rounds` turns: each round runs
    `turn(cluster, label, round)` on each cluster in order; the traced one's metrics are
    scraped throughout. Returns each scenario's runs merged over the rounds."""
    for cluster in clusters.values():
        cluster.start()
    scraper = None
    try:
        for cluster in clusters.values():
            await cluster.wait_serving()
        scraper = asyncio.ensure_future(_scrape_periodically(clusters[LABEL]))
        taken: list[Run] = []
        for round_ in range(rounds):
            for label in in_turn(list(clusters), round_):
                taken += await turn(clusters[label], label, round_)
        return merged(taken)
    finally:
        if scraper is not None:
            scraper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await scraper
        for cluster in clusters.values():
            cluster.stop()


def in_turn(labels: list[str], round_: int) -> list[str]:
    """The order of round `round_`: each goes first as often as the others."""
    first = round_ % len(labels)
    return labels[first:] + labels[:first]


def merged(runs: list[Run]) -> list[Run]:
    """One run per (name, concurrency): the rounds' requests together, their wall time summed."""
    merged: dict[tuple[str, int], Run] = {}
    for run in runs:
        into = merged.setdefault((run.name, run.concurrency), Run(run.name, run.concurrency))
        into.wall_s += run.wall_s
        into.total_ms += run.total_ms
        for stage, values in run.stages.items():
            into.stages.setdefault(stage, []).extend(values)
    return list(merged.values())


async def _scrape_periodically(cluster: LocalCluster) -> None:
    while True:
        for service in SERVICES:
            await asyncio.to_thread(_read, cluster.metrics_url(service))
        await asyncio.sleep(SCRAPE_INTERVAL_S)


def _read(url: str) -> None:
    with urllib.request.urlopen(url, timeout=2) as reply:
        reply.read()


def summary(runs: list[Run], label: str = LABEL, title: str = "") -> str:
    """The runs named with `label` against the plain ones beside them, for cache hits,
    misses and the echo server."""
    by_name = {(r.name, r.concurrency): r for r in runs}
    title = title or (
        "tracing as deployed (OTLP to a collector, batch processor, parent-based 10 % sampler)"
        f" and /metrics scraped every {SCRAPE_INTERVAL_S:.0f} s, vs. off"
    )
    lines = [f"\n{title}:"]
    for kind in (MISS, HIT, ECHO):
        for concurrency in sorted({c for _, c in by_name}):
            plain, traced = (
                by_name.get((kind + PLAIN_LABEL, concurrency)),
                by_name.get((kind + label, concurrency)),
            )
            if plain is None or traced is None:
                continue
            on, off = traced.percentile(50), plain.percentile(50)
            traced_hit = label == LABEL and kind == HIT  # the TLS targets are for misses only
            if concurrency in TARGET_AT[label] and (kind == MISS or traced_hit):
                what = "tracing + metrics" if label == LABEL else "TLS + mTLS"
                miss = "hit" if kind == HIT else "miss"
                targets.record(
                    f"{what}, cache-{miss} p50 c{concurrency}", on / off, TARGET, at_most=True
                )
            lines.append(
                f"  {kind:<18} c{concurrency}: p50 {on:.2f} ms vs {off:.2f} ms "
                f"({on / off:.2f}x), throughput {traced.rps / plain.rps:.2f}x"
            )
    echo_off, echo_on = (by_name.get((ECHO + tls, 1)) for tls in (PLAIN_LABEL, label))
    if echo_off and echo_on:
        # A miss makes four round trips: the caller's, and query's to the three services.
        floor = 4 * (echo_on.percentile(50) - echo_off.percentile(50))
        lines.append(
            f"  the floor: {floor:.2f} ms a miss at c1 (four round trips, each what it costs "
            f"the bare echo server)"
        )
    hit = by_name.get((HIT + label, 1))
    if hit is not None and label == LABEL:
        p50 = hit.percentile(50)
        verdict = "met" if p50 < CACHE_HIT_TARGET_MS else "MISSED"
        target = f"target < {CACHE_HIT_TARGET_MS} ms: {verdict}"
        lines.append(f"  cache-hit p50 with both on: {p50:.2f} ms ({target})")
    return "\n".join(lines)
