"""Health for HealthDetailsService: dependency probes, breaker states, operating signals and
an overall verdict."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from rag_common.breaker import BreakerState, CircuitBreaker
from rag_common.health.signals import SignalReport
from rag_common.health.verdict import Health, worst


@dataclass(frozen=True)
class DependencyReport:
    """One dependency's state at the moment of the check."""

    name: str
    health: Health
    latency_ms: float
    breaker: str
    detail: str


@dataclass(frozen=True)
class HealthReport:
    """A service's dependencies, its operating signals and its overall state."""

    service: str
    health: Health
    dependencies: list[DependencyReport]
    signals: list[SignalReport] = field(default_factory=list)


# A probe returns (health, detail) or raises when the dependency cannot be reached.
Probe = Callable[[], Awaitable[tuple[Health, str]]]


@dataclass(frozen=True)
class Dependency:
    """Something a service needs: how to check it and, if it has one, its breaker."""

    name: str
    probe: Probe | None = None
    breaker: CircuitBreaker | None = None


class HealthChecker:
    """Checks every dependency concurrently, each within `timeout_s`."""

    def __init__(
        self,
        service: str,
        dependencies: Sequence[Dependency],
        *,
        signals: Callable[[], list[SignalReport]] = list,
        timeout_s: float = 1.0,
        unavailable: Callable[[], str | None] = lambda: None,
    ) -> None:
        self._service = service
        self._dependencies = list(dependencies)
        self._signals = signals  # the operating signals: latency, errors, CPU, ...
        self._timeout_s = timeout_s
        self._unavailable = unavailable  # e.g. maintenance: a reason makes the service unhealthy

    @property
    def breakers(self) -> list[CircuitBreaker]:
        """The breaker of every dependency that has one."""
        return [d.breaker for d in self._dependencies if d.breaker is not None]

    async def report(self) -> HealthReport:
        """Check now."""
        reports = list(await asyncio.gather(*(self._check(d) for d in self._dependencies)))
        states = [r.health for r in reports]
        if self._unavailable() is not None or (
            states and all(s is Health.UNHEALTHY for s in states)
        ):
            overall = Health.UNHEALTHY
        elif any(s is not Health.HEALTHY for s in states):
            overall = Health.DEGRADED
        else:
            overall = Health.HEALTHY
        signals = self._signals()
        # A signal past its threshold makes the whole service as bad as that signal.
        overall = worst(overall, *(s.health for s in signals))
        return HealthReport(self._service, overall, reports, signals)

    async def _check(self, dependency: Dependency) -> DependencyReport:
        started = time.perf_counter()
        health, detail = Health.HEALTHY, "ok"
        if dependency.probe is not None:
            try:
                health, detail = await asyncio.wait_for(dependency.probe(), self._timeout_s)
            except TimeoutError:
                health, detail = Health.UNHEALTHY, f"no answer within {self._timeout_s:.1f}s"
            except Exception as exc:
                health, detail = Health.UNHEALTHY, type(exc).__name__
        latency_ms = (time.perf_counter() - started) * 1000
        breaker = dependency.breaker.state if dependency.breaker else None
        if breaker is BreakerState.OPEN:
            health, detail = Health.UNHEALTHY, "circuit breaker open"
        elif breaker is BreakerState.HALF_OPEN and health is Health.HEALTHY:
            health, detail = Health.DEGRADED, "circuit breaker half-open"
        return DependencyReport(
            dependency.name, health, latency_ms, breaker.value if breaker else "", detail
        )
