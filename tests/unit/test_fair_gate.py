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
    quiet = [asyncio.ensure_future(hold(gate, "quiet", order, release)) for _ in range(2)]
    await asyncio.sleep(0)
    # The quiet tenant's first question ran at once, in the place kept for first questions.
    assert order == ["flood", "quiet"] and gate.admitted == 8
    release.set()
    await asyncio.gather(first, *floods, *quiet)
    # Its second waited for one turn, not for the five flood questions before it.
    assert order[:4] == ["flood", "quiet", "flood", "quiet"]
    assert gate.admitted == 0


async def test_first_questions_never_wait_and_take_at_most_running_more_places():
    gate, order, release = FairGate(running=2, admitted=100), [], asyncio.Event()
    floods = [asyncio.ensure_future(hold(gate, "flood", order, release)) for _ in range(6)]
    await asyncio.sleep(0)
    others = [asyncio.ensure_future(hold(gate, f"t{n}", order, release)) for n in range(3)]
    await asyncio.sleep(0)
    # Two flood questions in the shared places, two other tenants in the first places;
    # the third tenant waits its turn like everyone else.
    assert order == ["flood", "flood", "t0", "t1"]
    release.set()
    await asyncio.gather(*floods, *others)
    assert order[4:6] == ["flood", "t2"] and gate.admitted == 0  # then turns, as before


async def test_at_most_running_questions_of_one_tenant_hold_a_place_at_once():
    gate, running, peak = FairGate(running=3, admitted=100), 0, 0

    async def question(tenant: str) -> None:
        nonlocal running, peak
        async with gate.place(tenant, 5.0):
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.01)
            running -= 1

    await asyncio.gather(*(question("acme") for n in range(20)))
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
    first = asyncio.ensure_future(hold(gate, "x", order, release))  # the one first place
    await asyncio.sleep(0)
    impatient = asyncio.ensure_future(hold(gate, "b", order, release, wait=0.01))
    patient = asyncio.ensure_future(hold(gate, "c", order, release))
    with pytest.raises(GateFull):
        await impatient
    cancelled = asyncio.ensure_future(hold(gate, "d", order, release))
    await asyncio.sleep(0)
    cancelled.cancel()
    release.set()
    await asyncio.gather(held, first, patient)
    assert order == ["a", "x", "c"] and gate.admitted == 0


async def test_while_another_tenant_asks_a_busy_one_holds_only_its_share():
    now = [0.0]
    gate = FairGate(running=8, admitted=100, tenant_share=2, clock=lambda: now[0])
    order, release = [], asyncio.Event()
    alone = [asyncio.ensure_future(hold(gate, "flood", order, release)) for _ in range(8)]
    await asyncio.sleep(0)
    assert order == ["flood"] * 8  # alone, it may use every place
    release.set()
    await asyncio.gather(*alone)
    order.clear()
    quiet_done = asyncio.Event()
    quiet_done.set()
    await hold(gate, "quiet", order, quiet_done)  # asked, and answered, just now
    release = asyncio.Event()
    floods = [asyncio.ensure_future(hold(gate, "flood", order, release)) for _ in range(8)]
    await asyncio.sleep(0)
    # Places are free, but while the quiet tenant asks, the flood runs two at a time.
    assert order == ["quiet", "flood", "flood"] and gate.admitted == 8
    release.set()
    await asyncio.gather(*floods)
    now[0] = 10.0  # the quiet tenant asked nothing for ten seconds: the flood has it all
    release = asyncio.Event()
    order.clear()
    floods = [asyncio.ensure_future(hold(gate, "flood", order, release)) for _ in range(8)]
    await asyncio.sleep(0)
    assert order == ["flood"] * 8
    release.set()
    await asyncio.gather(*floods)
    assert gate.admitted == 0


async def test_while_a_lone_question_runs_a_tenant_with_more_starts_no_new_one():
    gate = FairGate(running=8, admitted=100, tenant_share=2)
    order, flood_done, quiet_done = [], asyncio.Event(), asyncio.Event()
    running = asyncio.ensure_future(hold(gate, "flood", order, flood_done))
    await asyncio.sleep(0)
    quiet = asyncio.ensure_future(hold(gate, "quiet", order, quiet_done))
    await asyncio.sleep(0)
    more = [asyncio.ensure_future(hold(gate, "flood", order, flood_done)) for _ in range(3)]
    await asyncio.sleep(0)
    # The flood's share is two and six places are free, yet its second question waits:
    # the quiet tenant's one question shares the CPUs with one flood question, not more.
    assert order == ["flood", "quiet"] and gate.admitted == 5
    flood_done.set()
    await running
    await asyncio.sleep(0)
    assert order == ["flood", "quiet"]  # still waiting: the lone question is not done
    quiet_done.set()
    await asyncio.gather(quiet, *more)
    assert order == ["flood", "quiet", "flood", "flood", "flood"] and gate.admitted == 0


async def test_tenants_asking_one_question_each_never_wait_for_each_other():
    gate = FairGate(running=8, admitted=100, tenant_share=1)
    order, release = [], asyncio.Event()
    users = [asyncio.ensure_future(hold(gate, f"t{n}", order, release)) for n in range(5)]
    await asyncio.sleep(0)
    assert sorted(order) == [f"t{n}" for n in range(5)]
    release.set()
    await asyncio.gather(*users)
