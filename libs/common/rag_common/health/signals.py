"""Operating signals over a sliding window, judged against the seed's monitoring thresholds.

p95 latency, error rate, cache hit rate, CPU and memory: each is healthy, degraded (past
its warning) or unhealthy (past its critical threshold). These are for operators and
alerts; readiness keeps its own meaning (the service can serve).
"""

from __future__ import annotations

import bisect
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from rag_common.health.process import ProcessUsage
from rag_common.health.verdict import Health, judge

# Seconds; the warning and critical latencies (2 s, 5 s) are edges, so "p95 over 2 s" is
# exact: more than 5 % of calls took longer than 2 s.
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
    30.0,
)

# Codes that mean this service or one it depends on failed; a caller's own mistakes
# (INVALID_ARGUMENT, UNAUTHENTICATED, ...) and load shedding are not errors of the service.
SERVER_FAULTS = frozenset({"INTERNAL", "UNKNOWN", "UNAVAILABLE", "DEADLINE_EXCEEDED", "DATA_LOSS"})


@dataclass(frozen=True)
class Thresholds:
    """Where each signal turns degraded (warning) and unhealthy (critical)."""

    p95_warning_s: float = 2.0
    p95_critical_s: float = 5.0
    error_rate_warning: float = 0.01
    error_rate_critical: float = 0.05
    cache_hit_rate_warning: float = 0.30  # below it
    cache_hit_rate_critical: float = 0.10  # below it
    cpu_warning: float = 0.70
    cpu_critical: float = 0.90
    memory_warning: float = 0.75
    memory_critical: float = 0.90
    window_s: float = 60.0
    min_calls: int = 20  # fewer calls (or cache lookups) in the window: not judged


@dataclass(frozen=True)
class SignalReport:
    """One signal now: its value, thresholds and verdict."""

    name: str
    health: Health
    value: float
    warning: float
    critical: float
    detail: str


@dataclass(frozen=True)
class _Snapshot:
    at: float
    calls: int
    errors: int
    latency: tuple[int, ...]  # calls per LATENCY_BUCKETS bucket (+1 for slower)
    cache: tuple[int, int]  # hits, lookups
    cpu_s: float


class SignalWindow:
    """Counts calls by latency bucket and outcome; judges the last `window_s` seconds.

    Counters only grow; a snapshot is kept every `window_s / 12`, and a signal is the
    difference between now and the oldest snapshot inside the window. Recording a call is
    a bisect and two increments. `signals()` may be called from the metrics thread too.
    """

    def __init__(
        self,
        thresholds: Thresholds | None = None,
        *,
        cache: Callable[[], tuple[int, int]] | None = None,
        usage: ProcessUsage | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.thresholds = thresholds or Thresholds()
        self._cache = cache  # cumulative (hits, lookups), for a service that has a cache
        self._usage = usage or ProcessUsage()
        self._clock = clock
        self._step_s = self.thresholds.window_s / 12
        self._calls = 0
        self._errors = 0
        self._latency = [0] * (len(LATENCY_BUCKETS) + 1)
        self._snapshots: deque[_Snapshot] = deque(maxlen=14)
        self._snapshots.append(self._snapshot(clock()))

    def record(self, code: str, seconds: float, *, timed: bool = True) -> None:
        """One call ended with `code` after `seconds` (`timed=False`: not a latency sample,
        like a bulk ingest that is expected to take long)."""
        self._calls += 1
        if code in SERVER_FAULTS:
            self._errors += 1
        if timed:
            self._latency[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self._tick()

    def signals(self) -> list[SignalReport]:
        """Every signal over the window, now."""
        self._tick()
        now = self._snapshot(self._clock())
        start = self._oldest_in_window(now.at)
        t = self.thresholds
        elapsed = max(now.at - start.at, 1e-9)
        reports = [
            self._p95(now, start),
            self._error_rate(now, start),
            _above(
                "cpu",
                (now.cpu_s - start.cpu_s) / elapsed / self._usage.cpus,
                t.cpu_warning,
                t.cpu_critical,
                f"of {self._usage.cpus:g} CPUs",
            ),
            _above(
                "memory",
                self._usage.rss_bytes() / self._usage.memory_limit,
                t.memory_warning,
                t.memory_critical,
                f"of {self._usage.memory_limit / 2**30:.1f} GiB",
            ),
        ]
        if self._cache is not None:
            reports.insert(2, self._hit_rate(now, start))
        return reports

    def _p95(self, now: _Snapshot, start: _Snapshot) -> SignalReport:
        t = self.thresholds
        counts = [a - b for a, b in zip(now.latency, start.latency, strict=True)]
        total = sum(counts)
        if total < t.min_calls:
            return _quiet("p95_latency_s", t.p95_warning_s, t.p95_critical_s, total, "calls")
        value = _quantile(counts, 0.95)
        return _above("p95_latency_s", value, t.p95_warning_s, t.p95_critical_s, f"{total} calls")

    def _error_rate(self, now: _Snapshot, start: _Snapshot) -> SignalReport:
        t = self.thresholds
        calls, errors = now.calls - start.calls, now.errors - start.errors
        if calls < t.min_calls:
            return _quiet("error_rate", t.error_rate_warning, t.error_rate_critical, calls, "calls")
        return _above(
            "error_rate",
            errors / calls,
            t.error_rate_warning,
            t.error_rate_critical,
            f"{errors} of {calls} calls",
        )

    def _hit_rate(self, now: _Snapshot, start: _Snapshot) -> SignalReport:
        t = self.thresholds
        hits, lookups = now.cache[0] - start.cache[0], now.cache[1] - start.cache[1]
        warning, critical = t.cache_hit_rate_warning, t.cache_hit_rate_critical
        if lookups < t.min_calls:
            return _quiet("cache_hit_rate", warning, critical, lookups, "lookups")
        rate = hits / lookups
        return SignalReport(
            "cache_hit_rate",
            judge(rate, warning, critical, low_is_bad=True),
            rate,
            warning,
            critical,
            f"{hits} of {lookups} lookups",
        )

    def _tick(self) -> None:
        now = self._clock()
        if now - self._snapshots[-1].at >= self._step_s:
            self._snapshots.append(self._snapshot(now))

    def _snapshot(self, at: float) -> _Snapshot:
        cache = self._cache() if self._cache is not None else (0, 0)
        return _Snapshot(
            at, self._calls, self._errors, tuple(self._latency), cache, self._usage.cpu_seconds()
        )

    def _oldest_in_window(self, now: float) -> _Snapshot:
        # list(): one C-level copy, so a scrape thread reading while the event loop
        # appends never iterates a deque that changes under it.
        for snapshot in list(self._snapshots):
            if now - snapshot.at <= self.thresholds.window_s:
                return snapshot
        return self._snapshots[-1]

    @property
    def usage(self) -> ProcessUsage:
        """The process readings the CPU and memory signals come from."""
        return self._usage


def _quantile(counts: list[int], q: float) -> float:
    """The q-quantile of bucketed samples, interpolated inside its bucket (as Prometheus'
    histogram_quantile does); a sample past the last edge counts as the last edge."""
    rank, seen = q * sum(counts), 0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            if index == len(LATENCY_BUCKETS):
                return LATENCY_BUCKETS[-1]
            low = LATENCY_BUCKETS[index - 1] if index else 0.0
            high = LATENCY_BUCKETS[index]
            return low + (high - low) * (rank - seen) / count
        seen += count
    return 0.0


def _above(name: str, value: float, warning: float, critical: float, detail: str) -> SignalReport:
    return SignalReport(name, judge(value, warning, critical), value, warning, critical, detail)


def _quiet(name: str, warning: float, critical: float, count: int, what: str) -> SignalReport:
    return SignalReport(
        name, Health.HEALTHY, 0.0, warning, critical, f"not judged: {count} {what} in the window"
    )
