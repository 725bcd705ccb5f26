"""What tracing and metrics cost: the same queries with spans exported and /metrics scraped.

Metrics are always recorded (there is no switch to turn them off); what is added here is
a span per call and stage, written by the console exporter (JSON, the heavier of the two
exporters), and a scrape of every process's /metrics once a second during the runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.request
from collections.abc import Awaitable, Callable

from rag_bench.stats import Run
from rag_cli.launcher import SERVICES, LocalCluster

LABEL = ", traced + scraped"
TRACING_ENV = {"OTEL_TRACES_EXPORTER": "console"}
CACHE_HIT_TARGET_MS = 2.0


async def traced_runs(
    cluster: LocalCluster, runs: Callable[[LocalCluster], Awaitable[list[Run]]]
) -> list[Run]:
    """Start `cluster`, and run `runs` against it while its metrics are scraped."""
    cluster.start()
    try:
        await cluster.wait_serving()
        scraper = asyncio.ensure_future(_scrape_every_second(cluster))
        try:
            return await runs(cluster)
        finally:
            scraper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await scraper
    finally:
        cluster.stop()


async def _scrape_every_second(cluster: LocalCluster) -> None:
    while True:
        for service in SERVICES:
            await asyncio.to_thread(_read, cluster.metrics_url(service))
        await asyncio.sleep(1.0)


def _read(url: str) -> None:
    with urllib.request.urlopen(url, timeout=2) as reply:
        reply.read()


def summary(runs: list[Run]) -> str:
    """Traced against plain, for cache hits and misses at each concurrency."""
    by_name = {(r.name, r.concurrency): r for r in runs}
    lines = ["\ntracing on (console exporter) and /metrics scraped each second, vs. off:"]
    for kind in ("grpc (4 services)", "grpc, cache hit"):
        for concurrency in sorted({c for _, c in by_name}):
            plain, traced = (
                by_name.get((kind, concurrency)),
                by_name.get((kind + LABEL, concurrency)),
            )
            if plain is None or traced is None:
                continue
            on, off = traced.percentile(50), plain.percentile(50)
            lines.append(
                f"  {kind:<18} c{concurrency}: p50 {on:.2f} ms vs {off:.2f} ms "
                f"({on / off:.2f}x), throughput {traced.rps / plain.rps:.2f}x"
            )
    hit = by_name.get(("grpc, cache hit" + LABEL, 1))
    if hit is not None:
        p50 = hit.percentile(50)
        verdict = "met" if p50 < CACHE_HIT_TARGET_MS else "MISSED"
        target = f"target < {CACHE_HIT_TARGET_MS} ms: {verdict}"
        lines.append(f"  cache-hit p50 with both on: {p50:.2f} ms ({target})")
    return "\n".join(lines)
