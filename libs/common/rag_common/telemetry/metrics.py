"""Per-process metrics on a Prometheus endpoint: what dashboards, alerts and autoscalers read.

Every service exports the same RPC families (calls in flight, latency by method and code,
errors by code and reason), its breakers (state and transitions per dependency) and the
process's CPU and memory; each service adds its own (caches, batches, tokens and cost).
`rag_requests_in_flight` and the p95 of `rag_request_duration_seconds` are the seed's scaling
signals beside CPU: the chart's HPA reads them through the Prometheus Adapter, or KEDA
queries them (deploy/helm/rag). Names are listed in `docs/operations.md`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from rag_common.breaker import BreakerState, CircuitBreaker
from rag_common.health.signals import LATENCY_BUCKETS, SignalWindow
from rag_common.telemetry.stats import Distribution


class RpcMetrics:
    """Calls in flight, their latency and their errors, for one service process."""

    def __init__(self, service: str) -> None:
        # A registry of its own, not the library's global one: two hosts in one process
        # (as in tests) never mix their numbers.
        self.registry = CollectorRegistry()
        self.service = service
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, ..._memory_bytes
        self._in_flight = Gauge(
            "rag_requests_in_flight",
            "Calls being served now; a batch call counts each question it carries.",
            ["service", "method"],
            registry=self.registry,
        )
        self._duration = Histogram(
            "rag_request_duration_seconds",
            "Time to serve a call, by method and status code.",
            ["service", "method", "code"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._errors = Counter(
            "rag_errors",
            "Calls that ended in an error, by method, status code and ErrorInfo reason.",
            ["service", "method", "code", "reason"],
            registry=self.registry,
        )
        self._stalls = Counter(
            "rag_stream_stalls",
            "Streams cut because their reader stopped reading.",
            ["service", "method"],
            registry=self.registry,
        )
        self._gauges: dict[str, Gauge] = {}
        self._histograms: dict[tuple[str, str], Histogram] = {}

    def started(self, method: str) -> None:
        """A call began."""
        self._gauge(method).inc()

    def in_flight(self, method: str, change: int) -> None:
        """More (or, negative, fewer) questions in flight in a call already counted."""
        self._gauge(method).inc(change)

    def finished(self, method: str, code: str, seconds: float, reason: str = "") -> None:
        """A call ended with `code` (and, for an error, `reason`) after `seconds`."""
        self._gauge(method).dec()
        key = (method, code)
        if (histogram := self._histograms.get(key)) is None:
            histogram = self._histograms[key] = self._duration.labels(self.service, *key)
        histogram.observe(seconds)
        if code != "OK":
            self._errors.labels(self.service, method, code, reason).inc()

    def stalled(self, method: str) -> None:
        """A stream was cut because its reader stopped reading."""
        self._stalls.labels(self.service, method).inc()

    def _gauge(self, method: str) -> Gauge:
        # Children looked up once per method: `labels()` costs more than the update itself,
        # and a cache hit is served in well under a millisecond.
        if (gauge := self._gauges.get(method)) is None:
            gauge = self._gauges[method] = self._in_flight.labels(self.service, method)
        return gauge

    def read_at_scrape(self, collect: Callable[[], Iterable[Metric]]) -> None:
        """Export numbers that already exist elsewhere (breaker states, cache counters),
        read when Prometheus scrapes rather than copied on every change."""
        self.registry.register(_Callback(collect))

    def watch_breakers(self, breakers: Sequence[CircuitBreaker]) -> None:
        """Export each breaker's state and transitions, labelled with its dependency."""
        self.read_at_scrape(lambda: breaker_families(self.service, breakers))

    def watch_signals(self, signals: SignalWindow) -> None:
        """Export the health signals (p95 over the window is an autoscaling signal too) and
        the limits CPU and memory are measured against."""
        self.read_at_scrape(lambda: signal_families(self.service, signals))

    def serve(self, host: str, port: int) -> None:
        """Expose /metrics on `port` (a thread of its own, off the event loop)."""
        start_http_server(port, addr=host, registry=self.registry)


class _Callback(Collector):
    def __init__(self, collect: Callable[[], Iterable[Metric]]) -> None:
        self._collect = collect

    def collect(self) -> Iterable[Metric]:
        return self._collect()


def breaker_families(service: str, breakers: Sequence[CircuitBreaker]) -> list[Metric]:
    """rag_breaker_state (1 for the state each breaker is in) and rag_breaker_transitions."""
    state = GaugeMetricFamily(
        "rag_breaker_state",
        "Circuit breaker state per dependency: 1 for the state it is in, 0 for the others.",
        labels=["service", "dependency", "state"],
    )
    moves = CounterMetricFamily(
        "rag_breaker_transitions",
        "Times each breaker moved into a state.",
        labels=["service", "dependency", "state"],
    )
    for breaker in breakers:
        now = breaker.peek()  # runs on the scrape thread: must not move the breaker
        # dict(): one C-level copy, so a change on the event loop cannot break iteration.
        counts = dict(breaker.transitions)
        for option in BreakerState:
            labels = [service, breaker.name, option.value]
            state.add_metric(labels, float(option is now))
            moves.add_metric(labels, counts.get(option.value, 0))
    return [state, moves]


def signal_families(service: str, signals: SignalWindow) -> list[Metric]:
    """rag_health_signal (value over the window), rag_health_signal_state (0 healthy,
    1 degraded, 2 unhealthy), rag_process_cpus and rag_process_memory_limit_bytes."""
    value = GaugeMetricFamily(
        "rag_health_signal",
        "Each health signal over its sliding window (seconds, or a share between 0 and 1).",
        labels=["service", "signal"],
    )
    state = GaugeMetricFamily(
        "rag_health_signal_state",
        "Each health signal's verdict: 0 healthy, 1 degraded, 2 unhealthy.",
        labels=["service", "signal"],
    )
    for report in signals.signals():
        value.add_metric([service, report.name], report.value)
        state.add_metric([service, report.name], report.health.rank)
    cpus = GaugeMetricFamily(
        "rag_process_cpus",
        "CPUs this process may use (cgroup quota, else cores).",
        labels=["service"],
    )
    cpus.add_metric([service], signals.usage.cpus)
    memory = GaugeMetricFamily(
        "rag_process_memory_limit_bytes",
        "Memory this process may use (cgroup limit, else the machine's).",
        labels=["service"],
    )
    memory.add_metric([service], signals.usage.memory_limit)
    return [value, state, cpus, memory]


def counter_family(
    name: str, documentation: str, labels: Sequence[str], values: dict[tuple[str, ...], float]
) -> CounterMetricFamily:
    """A counter family from a mapping of label values to totals."""
    family = CounterMetricFamily(name, documentation, labels=list(labels))
    for label_values, value in values.items():
        family.add_metric(list(label_values), value)
    return family


def histogram_family(
    name: str,
    documentation: str,
    labels: Sequence[str],
    values: dict[tuple[str, ...], Distribution],
) -> HistogramMetricFamily:
    """A histogram family from Distributions kept by a core object."""
    family = HistogramMetricFamily(name, documentation, labels=list(labels))
    for label_values, distribution in values.items():
        counts, total = distribution.snapshot()
        edges = [*map(str, distribution.buckets), "+Inf"]
        cumulative, running = [], 0
        for edge, count in zip(edges, counts, strict=True):
            running += count
            cumulative.append((edge, running))
        family.add_metric(list(label_values), cumulative, total)
    return family
