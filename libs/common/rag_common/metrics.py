"""Per-process RPC metrics on a Prometheus endpoint: what autoscalers and alerts read.

`rag_requests_in_flight` (calls being served now) and `rag_request_duration_seconds` (by
method and status code) are the seed's scaling signals beside CPU: the chart's HPA reads
them through the Prometheus Adapter, or KEDA queries them (deploy/helm/rag).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, Histogram, start_http_server

# Seconds; the seed's latency thresholds (2 s warning, 5 s critical) fall on bucket edges.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


class RpcMetrics:
    """Calls in flight and their latency, for one service process."""

    def __init__(self, service: str) -> None:
        # A registry of its own, not the library's global one: two hosts in one process
        # (as in tests) never mix their numbers.
        self.registry = CollectorRegistry()
        self._service = service
        self._in_flight = Gauge(
            "rag_requests_in_flight",
            "Calls being served now.",
            ["service", "method"],
            registry=self.registry,
        )
        self._duration = Histogram(
            "rag_request_duration_seconds",
            "Time to serve a call, by method and status code.",
            ["service", "method", "code"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self._gauges: dict[str, Gauge] = {}
        self._histograms: dict[tuple[str, str], Histogram] = {}

    def started(self, method: str) -> None:
        """A call began."""
        self._gauge(method).inc()

    def finished(self, method: str, code: str, seconds: float) -> None:
        """A call ended with `code` after `seconds`."""
        self._gauge(method).dec()
        key = (method, code)
        if (histogram := self._histograms.get(key)) is None:
            histogram = self._histograms[key] = self._duration.labels(self._service, *key)
        histogram.observe(seconds)

    def _gauge(self, method: str) -> Gauge:
        # Children looked up once per method: `labels()` costs more than the update itself,
        # and a cache hit is served in well under a millisecond.
        if (gauge := self._gauges.get(method)) is None:
            gauge = self._gauges[method] = self._in_flight.labels(self._service, method)
        return gauge

    def serve(self, host: str, port: int) -> None:
        """Expose /metrics on `port` (a thread of its own, off the event loop)."""
        start_http_server(port, addr=host, registry=self.registry)
