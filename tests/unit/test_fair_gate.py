"""The pipeline's fair gate: a few questions at a time, tenants taking turns for the rest."""

from __future__ import annotations

import asyncio

import pytest

from rag_query.fair_gate import FairGate, GateFull


async def hold(gate: FairGate, tenant: str, order: list[str], release: asyncio.Event, wait=5.0):
    async with gate.place(tenant, wait):
        order.append(tenant)
        await release.wait()


async def test_a_freed_place_goes_to_the_next_tenant_not_the_longest_queue():
    gate, order, release = FairGate(running=1, admitted=100), [], asyncio.Event()
    first = asyncio.ensure_future(hold(gate, "flood", order, release))
    await asyncio.sleep(0)
    floods = [asyncio.ensure_future(hold(gate, "flood", order, release)) for _ in range(5)]
    await asyncio.sleep(0)
    quiet = asyncio.ensure_future(hold(gate, "quiet", order, release))
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(first, *floods, quiet)
    # The quiet tenant's one question waited for one turn, not for the five before it.
    assert order[:3] == ["flood", "flood", "quiet"]
    assert gate.admitted == 0


async def test_at_most_running_questions_hold_a_place_at_once():
    gate, running, peak = FairGate(running=3, admitted=100), 0, 0

    async def question(tenant: str) -> None:
        nonlocal running, peak
        async with gate.place(tenant, 5.0):
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.01)
            running -= 1

    await asyncio.gather(*(question(f"t{n % 4}") for n in range(20)))
    assert peak == 3


async def test_past_the_admission_limit_a_question_is_refused_at_once():
    gate, order, release = FairGate(running=1, admitted=2), [], asyncio.Event()
    held = asyncio.ensure_future(hold(gate, "a", order, release))
    await asyncio.sleep(0)
    waiting = asyncio.ensure_future(hold(gate, "b", order, release))
    await asyncio.sleep(0)
    assert gate.full and gate.admitted == 2
    with pytest.raises(GateFull):
        async with gate.place("c", 5.0):  # refused without waiting
            pass
    release.set()
    await asyncio.gather(held, waiting)
    assert order == ["a", "b"] and gate.admitted == 0


async def test_a_waiter_that_gives_up_takes_no_place_from_the_others():
    gate, order, release = FairGate(running=1, admitted=10), [], asyncio.Event()
    held = asyncio.ensure_future(hold(gate, "a", order, release))
    await asyncio.sleep(0)
    impatient = asyncio.ensure_future(hold(gate, "b", order, release, wait=0.01))
    patient = asyncio.ensure_future(hold(gate, "c", order, release))
    with pytest.raises(GateFull):
        await impatient
    cancelled = asyncio.ensure_future(hold(gate, "d", order, release))
    await asyncio.sleep(0)
    cancelled.cancel()
    release.set()
    await asyncio.gather(held, patient)
    assert order == ["a", "c"] and gate.admitted == 0
