"""Hedged calls: a slow first attempt is overtaken by a second, within a budget."""

from __future__ import annotations

import asyncio
import time

import pytest

from rag_common.client.hedging import HedgeBudget, LatencyWindow, hedged


class Replicas:
    """Attempts go round-robin over replicas; a hung one never answers."""

    def __init__(self, *hung: bool) -> None:
        self.hung = hung
        self.sent = 0
        self.cancelled = 0

    async def attempt(self) -> str:
        replica = self.sent % len(self.hung)
        self.sent += 1
        if self.hung[replica]:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        return f"replica {replica}"


async def test_a_call_to_a_hung_replica_is_answered_by_the_next_after_the_delay():
    replicas = Replicas(True, False)
    started = time.monotonic()
    assert await hedged(replicas.attempt, 0.05, HedgeBudget()) == "replica 1"
    assert time.monotonic() - started < 1.0
    await asyncio.sleep(0)
    assert replicas.sent == 2 and replicas.cancelled == 1  # the loser is not left running


async def test_a_call_on_time_sends_nothing_more():
    replicas = Replicas(False, False)
    assert await hedged(replicas.attempt, 0.05, HedgeBudget()) == "replica 0"
    assert replicas.sent == 1


async def test_a_caller_error_is_not_sent_twice():
    sent = []

    async def refused() -> str:
        sent.append(1)
        raise ValueError("bad input")

    with pytest.raises(ValueError):
        await hedged(refused, 0.05, HedgeBudget())
    assert len(sent) == 1


async def test_hedges_stay_within_about_a_tenth_of_calls():
    budget, hedges = HedgeBudget(), 0
    for _ in range(200):  # everything slow: every call would want a hedge
        if budget.take():
            hedges += 1
        else:
            budget.earn()
    assert 5 <= hedges <= 25


def test_the_delay_is_the_p95_of_recent_attempts_once_there_are_enough():
    window = LatencyWindow()
    assert window.hedge_delay() is None
    for n in range(100):
        window.add(0.03 if n < 95 else 0.5)
    assert window.hedge_delay() == pytest.approx(0.5)
    for _ in range(200):  # the old samples leave the window
        window.add(0.001)
    assert window.hedge_delay() == pytest.approx(0.02)  # never below the floor
