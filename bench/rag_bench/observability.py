"""What tracing, metrics and TLS cost: the same queries on the same stored corpus, served
again with spans exported and /metrics scraped, or with TLS on every port.

Metrics are always recorded (there is no switch to turn them off); the traced run adds a
span per call and stage, written by the console exporter (JSON, the heavier of the two
exporters), and a scrape of every process's /metrics once a second. The TLS run has every
port on TLS and mTLS between services. Signed internal identity is on in every run.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.request
from collections.abc import Awaitable, Callable

from rag_bench.stats import Run
from rag_cli.launcher import SERVICES, LocalCluster

LABEL = ", traced + scraped"
TLS_LABEL = ", TLS + mTLS"
TRACING_ENV = {"OTEL_TRACES_EXPORTER": "console"}
CACHE_HIT_TARGET_MS = 2.0


async def restarted_runs(
    cluster: LocalCluster,
    runs: Callable[[LocalCluster], Awaitable[list[Run]]],
    *,
    scrape: bool = True,
) -> list[Run]:
    """Start `cluster`, and run `runs` against it (while its metrics are scraped)."""
    cluster.start()
    try:
        await cluster.wait_serving()
        scraper = asyncio.ensure_future(_scrape_every_second(cluster) if scrape else _idle())
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


async def _idle() -> None:
    await asyncio.Event().wait()


def _read(url: str) -> None:
    with urllib.request.urlopen(url, timeout=2) as reply:
        reply.read()


def summary(runs: list[Run], label: str = LABEL, title: str = "") -> str:
    """The runs named with `label` against the plain ones, for cache hits and misses."""
    by_name = {(r.name, r.concurrency): r for r in runs}
    title = title or "tracing on (console exporter) and /metrics scraped each second, vs. off"
    lines = [f"\n{title}:"]
    for kind in ("grpc (4 services)", "grpc, cache hit"):
        for concurrency in sorted({c for _, c in by_name}):
            plain, traced = (
                by_name.get((kind, concurrency)),
                by_name.get((kind + label, concurrency)),
            )
            if plain is None or traced is None:
                continue
            on, off = traced.percentile(50), plain.percentile(50)
            lines.append(
                f"  {kind:<18} c{concurrency}: p50 {on:.2f} ms vs {off:.2f} ms "
                f"({on / off:.2f}x), throughput {traced.rps / plain.rps:.2f}x"
            )
    hit = by_name.get(("grpc, cache hit" + label, 1))
    if hit is not None and label == LABEL:
        p50 = hit.percentile(50)
        verdict = "met" if p50 < CACHE_HIT_TARGET_MS else "MISSED"
        target = f"target < {CACHE_HIT_TARGET_MS} ms: {verdict}"
        lines.append(f"  cache-hit p50 with both on: {p50:.2f} ms ({target})")
    return "\n".join(lines)
