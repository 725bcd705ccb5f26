"""What tracing, metrics and TLS cost: the same queries on the same stored corpus, served
again with spans exported and /metrics scraped, or with TLS on every port.

Both as the chart deploys them. Metrics are always recorded (there is no switch to turn them
off); the traced run exports spans over OTLP/gRPC through the SDK's batch processor to a
local collector process, with the chart's default sampler (parent-based, a tenth of new
traces), and every process's /metrics is scraped every 15 s, the ServiceMonitor's interval.
The TLS run has every port on TLS and mTLS between services, over kept-alive channels.
Signed internal identity is on in every run.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.request
from collections.abc import Awaitable, Callable

from rag_bench import targets
from rag_bench.stats import Run
from rag_cli.launcher import SERVICES, LocalCluster

LABEL = ", traced + scraped"
TLS_LABEL = ", TLS + mTLS"
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
        scraper = asyncio.ensure_future(_scrape_periodically(cluster) if scrape else _idle())
        try:
            return await runs(cluster)
        finally:
            scraper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await scraper
    finally:
        cluster.stop()


async def _scrape_periodically(cluster: LocalCluster) -> None:
    while True:
        for service in SERVICES:
            await asyncio.to_thread(_read, cluster.metrics_url(service))
        await asyncio.sleep(SCRAPE_INTERVAL_S)


async def _idle() -> None:
    await asyncio.Event().wait()


def _read(url: str) -> None:
    with urllib.request.urlopen(url, timeout=2) as reply:
        reply.read()


def summary(runs: list[Run], label: str = LABEL, title: str = "") -> str:
    """The runs named with `label` against the plain ones, for cache hits and misses."""
    by_name = {(r.name, r.concurrency): r for r in runs}
    title = title or (
        "tracing as deployed (OTLP to a collector, batch processor, parent-based 10 % sampler)"
        f" and /metrics scraped every {SCRAPE_INTERVAL_S:.0f} s, vs. off"
    )
    lines = [f"\n{title}:"]
    for kind in (MISS, HIT, ECHO):
        for concurrency in sorted({c for _, c in by_name}):
            plain, traced = (
                by_name.get((kind, concurrency)),
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
    echo_off, echo_on = (by_name.get((ECHO + tls, 1)) for tls in ("", label))
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
