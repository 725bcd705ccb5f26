"""Health signals: each turns degraded and unhealthy at the seed's thresholds, over a window."""

from __future__ import annotations

import pytest

from rag_common.health.details import Dependency, Health, HealthChecker
from rag_common.health.process import ProcessUsage
from rag_common.health.signals import SignalWindow, Thresholds
from tests.support.clock import Clock


class Usage:
    """A process whose CPU time and memory the test sets."""

    cpus = 2.0
    memory_limit = 1000

    def __init__(self) -> None:
        self.cpu = 0.0
        self.rss = 100

    def cpu_seconds(self) -> float:
        return self.cpu

    def rss_bytes(self) -> int:
        return self.rss


def window(cache=None) -> tuple[SignalWindow, Clock, Usage]:
    clock, usage = Clock(1000.0), Usage()
    return SignalWindow(Thresholds(), cache=cache, usage=usage, clock=clock), clock, usage


def by_name(signals) -> dict:
    return {s.name: s for s in signals.signals()}


def calls(signals: SignalWindow, clock: Clock, count: int, seconds: float, code: str = "OK"):
    for _ in range(count):
        clock.now += 0.01
        signals.record(code, seconds)


@pytest.mark.parametrize(
    ("slow_share", "slow_s", "expected"),
    [
        (0.04, 3.0, Health.HEALTHY),  # under 5 % slow: p95 stays fast
        (0.10, 3.0, Health.DEGRADED),  # p95 between 2 s and 5 s
        (0.10, 8.0, Health.UNHEALTHY),  # p95 past 5 s
    ],
)
def test_p95_latency_turns_degraded_past_2s_and_unhealthy_past_5s(slow_share, slow_s, expected):
    signals, clock, _ = window()
    slow = int(100 * slow_share)
    calls(signals, clock, 100 - slow, 0.05)
    calls(signals, clock, slow, slow_s)
    p95 = by_name(signals)["p95_latency_s"]
    assert p95.health is expected
    assert (p95.value > 2.0) == (expected is not Health.HEALTHY)


@pytest.mark.parametrize(
    ("failures", "code", "expected"),
    [
        (0, "UNAVAILABLE", Health.HEALTHY),
        (2, "UNAVAILABLE", Health.DEGRADED),  # 2 %: past 1 %
        (6, "INTERNAL", Health.UNHEALTHY),  # 6 %: past 5 %
        (30, "INVALID_ARGUMENT", Health.HEALTHY),  # callers' mistakes are not the service's
    ],
)
def test_error_rate_counts_only_the_services_own_failures(failures, code, expected):
    signals, clock, _ = window()
    calls(signals, clock, 100 - failures, 0.01)
    calls(signals, clock, failures, 0.01, code)
    assert by_name(signals)["error_rate"].health is expected


def test_a_signal_is_judged_on_the_window_only_and_recovers_once_failures_age_out():
    signals, clock, _ = window()
    calls(signals, clock, 50, 0.01, "UNAVAILABLE")
    assert by_name(signals)["error_rate"].health is Health.UNHEALTHY
    for _ in range(15):  # 75 s of healthy traffic: the failures leave the 60 s window
        clock.now += 5
        calls(signals, clock, 5, 0.01)
    error_rate = by_name(signals)["error_rate"]
    assert error_rate.health is Health.HEALTHY
    assert error_rate.value == 0.0


def test_too_few_calls_are_not_judged():
    signals, clock, _ = window()
    calls(signals, clock, 5, 9.0, "INTERNAL")
    report = by_name(signals)
    assert report["error_rate"].health is Health.HEALTHY
    assert "not judged" in report["error_rate"].detail
    assert report["p95_latency_s"].health is Health.HEALTHY


def test_untimed_calls_count_for_errors_but_not_for_latency():
    signals, clock, _ = window()
    for _ in range(50):
        clock.now += 0.01
        signals.record("OK", 30.0, timed=False)  # bulk ingest: long by nature
    calls(signals, clock, 50, 0.01)
    report = by_name(signals)
    assert report["p95_latency_s"].health is Health.HEALTHY
    assert "50 calls" in report["p95_latency_s"].detail


@pytest.mark.parametrize(
    ("hits", "expected"), [(50, Health.HEALTHY), (20, Health.DEGRADED), (5, Health.UNHEALTHY)]
)
def test_cache_hit_rate_turns_degraded_below_30_percent_and_unhealthy_below_10(hits, expected):
    counts = [0, 0]
    signals, clock, _ = window(cache=lambda: tuple(counts))
    counts[:] = [hits, 100]
    clock.now += 1
    assert by_name(signals)["cache_hit_rate"].health is expected


def test_a_service_without_a_cache_has_no_hit_rate_signal():
    signals, _, _ = window()
    assert "cache_hit_rate" not in by_name(signals)


@pytest.mark.parametrize(
    ("busy_share", "expected"),
    [(0.5, Health.HEALTHY), (0.8, Health.DEGRADED), (0.95, Health.UNHEALTHY)],
)
def test_cpu_is_measured_against_the_cpus_the_process_may_use(busy_share, expected):
    signals, clock, usage = window()
    clock.now += 10
    usage.cpu += 10 * usage.cpus * busy_share
    cpu = by_name(signals)["cpu"]
    assert cpu.health is expected
    assert cpu.value == pytest.approx(busy_share)


@pytest.mark.parametrize(
    ("rss", "expected"), [(500, Health.HEALTHY), (800, Health.DEGRADED), (950, Health.UNHEALTHY)]
)
def test_memory_is_measured_against_the_memory_limit(rss, expected):
    signals, _, usage = window()
    usage.rss = rss
    assert by_name(signals)["memory"].health is expected


async def test_a_tripped_signal_makes_the_service_report_as_bad_as_the_signal():
    signals, clock, _ = window()
    checker = HealthChecker("query", [Dependency("retrieval")], signals=signals.signals)
    assert (await checker.report()).health is Health.HEALTHY
    calls(signals, clock, 100, 0.01, "UNAVAILABLE")
    report = await checker.report()
    assert report.health is Health.UNHEALTHY
    assert report.dependencies[0].health is Health.HEALTHY  # the signal tripped, not a probe


def test_the_limits_come_from_the_cgroup_when_the_container_sets_them(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    (tmp_path / "memory.max").write_text(f"{512 * 2**20}\n")
    usage = ProcessUsage(tmp_path)
    assert usage.cpus == 1.5
    assert usage.memory_limit == 512 * 2**20
    (tmp_path / "cpu.max").write_text("max 100000\n")
    (tmp_path / "memory.max").write_text("max\n")
    unlimited = ProcessUsage(tmp_path)
    assert unlimited.cpus >= 1 and unlimited.memory_limit > 512 * 2**20
    assert unlimited.rss_bytes() > 0
