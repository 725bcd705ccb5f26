"""Shedding while busy: only a tenant over its even share is refused, only while the event
loop is busy, more often the busier it is; and the busy measure follows the thread's CPU."""

from __future__ import annotations

import time

import pytest

from rag_common.errors import ResourceExhausted
from rag_common.server.busy_shedding import WINDOW_S, BusyShedding, LoopBusy
from tests.support.clock import Clock


def shedding(busy: float, chance: float = 0.5, threshold: float = 0.3):
    clock = Clock(100.0)
    levels = {"busy": busy}
    shed = BusyShedding(
        threshold, 0.2, busy=lambda: levels["busy"], clock=clock, chance=lambda: chance
    )
    return shed, levels, clock


def calls(shed: BusyShedding, tenant: str, count: int, running: int = 1) -> None:
    """`count` calls of `tenant`, each finding `running` others of its tenant running."""
    for _ in range(count):
        shed.check(tenant)
        shed.count(tenant, running=running)


def test_a_tenant_over_its_share_is_refused_while_busy_and_the_other_is_not():
    shed, _, _ = shedding(busy=0.9)
    calls(shed, "acme", 10)
    calls(shed, "globex", 1)
    with pytest.raises(ResourceExhausted) as refused:
        shed.check("acme")
    assert refused.value.reason == "TENANT_OVER_SHARE"
    assert 0.1 <= refused.value.retry_after_s <= 0.3
    calls(shed, "globex", 5)  # still under an even share: never refused


def test_a_tenant_asking_one_call_at_a_time_is_never_refused():
    """Found by the bench: tenant B, one question at a time, made more calls than tenant A's
    two long bulk-ingest calls, and was refused while A's ingest kept the loop busy."""
    shed, _, _ = shedding(busy=1.0, chance=0.0)
    calls(shed, "ingester", 2)
    calls(shed, "asker", 50, running=0)
    calls(shed, "asker", 1, running=1)  # its calls overlap: now it is over its share
    with pytest.raises(ResourceExhausted):
        shed.check("asker")


def test_a_lone_tenant_is_never_refused_however_busy():
    shed, _, _ = shedding(busy=1.0)
    calls(shed, "acme", 1000)


def test_below_the_threshold_nobody_is_refused():
    shed, levels, _ = shedding(busy=0.29)
    calls(shed, "acme", 10)
    calls(shed, "globex", 1)
    calls(shed, "acme", 10)
    levels["busy"] = 1.0
    with pytest.raises(ResourceExhausted):
        shed.check("acme")


@pytest.mark.parametrize(("busy", "chance", "refused"), [(0.35, 0.2, True), (0.35, 0.3, False)])
def test_refusals_grow_with_how_busy_the_loop_is(busy, chance, refused):
    """At a quarter of the ramp above the threshold, a quarter of the calls are refused."""
    shed, _, _ = shedding(busy=busy, chance=chance)
    calls(shed, "acme", 10)
    calls(shed, "globex", 1)
    if refused:
        with pytest.raises(ResourceExhausted):
            shed.check("acme")
    else:
        shed.check("acme")


def test_refused_calls_do_not_count_and_old_calls_are_forgotten():
    shed, _, clock = shedding(busy=1.0)
    calls(shed, "acme", 3)
    calls(shed, "globex", 2)
    for _ in range(50):  # refused, not counted: acme stays at 3 against globex's 2
        with pytest.raises(ResourceExhausted):
            shed.check("acme")
    calls(shed, "globex", 1)
    calls(shed, "acme", 1)  # 3 of 6: an even share again
    clock.now += WINDOW_S  # a quiet second: both tenants' calls are forgotten
    calls(shed, "acme", 20)
    calls(shed, "globex", 1)
    with pytest.raises(ResourceExhausted):
        shed.check("acme")


def test_threshold_one_turns_it_off():
    shed, _, _ = shedding(busy=1.0, threshold=1.0)
    calls(shed, "acme", 10)
    calls(shed, "globex", 1)
    calls(shed, "acme", 10)


def test_the_busy_level_follows_the_cpu_time_of_the_reading_thread():
    clock, cpu = Clock(100.0), Clock(100.0)
    busy = LoopBusy(0.05, 0.5, clock=clock, cpu=cpu)
    assert busy.level() == 0.0
    for _ in range(10):  # on a CPU the whole time
        clock.now += 0.1
        cpu.now += 0.1
        busy.level()
    assert busy.level() > 0.99
    for _ in range(10):  # waiting, off the CPU
        clock.now += 0.1
        busy.level()
    assert busy.level() < 0.01


def test_the_busy_level_of_a_real_thread_that_computes_then_sleeps():
    busy = LoopBusy()
    busy.level()
    until = time.perf_counter() + 0.3
    while time.perf_counter() < until:
        busy.level()
    assert busy.level() > 0.5
    for _ in range(6):
        time.sleep(0.06)
        busy.level()
    assert busy.level() < 0.2
