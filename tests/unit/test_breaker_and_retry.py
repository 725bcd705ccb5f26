from __future__ import annotations

import asyncio

import pytest

from rag_common import context
from rag_common.breaker import BreakerPolicy, BreakerState, CircuitBreaker, calling, guarded
from rag_common.errors import InvalidArgument, NotFound, ResourceExhausted, Unavailable
from rag_generation.retry import RetryPolicy, retrying
from tests.support.clock import Clock

DOWN = Unavailable("down")


def breaker(clock: Clock, **policy) -> CircuitBreaker:
    defaults = {
        "window": 10,
        "min_calls": 4,
        "failure_rate": 0.5,
        "consecutive_failures": 3,
        "recovery_s": 5.0,
        "half_open_probes": 1,
    }
    return CircuitBreaker("dep", BreakerPolicy(**(defaults | policy)), clock=clock)


def test_consecutive_failures_open_the_breaker():
    b = breaker(Clock())
    for _ in range(2):
        b.record_failure(DOWN)
    assert b.allow()
    b.record_failure(DOWN)
    assert b.state is BreakerState.OPEN and not b.allow()


def test_failure_rate_over_the_window_opens_it_only_after_min_calls():
    b = breaker(Clock(), consecutive_failures=100)
    b.record_failure(DOWN)
    b.record_success()
    b.record_failure(DOWN)
    assert b.state is BreakerState.CLOSED  # 3 calls < min_calls
    b.record_success()
    assert b.state is BreakerState.CLOSED  # 2/4 = 0.5 reached only on a failure
    b.record_failure(DOWN)
    assert b.state is BreakerState.OPEN  # 3/5 failed


def test_callers_mistakes_never_open_it():
    b = breaker(Clock())
    for _ in range(10):
        b.record_failure(InvalidArgument("question", "empty"))
        b.record_failure(NotFound("no document 'x' in this tenant"))  # a lookup of nothing
    assert b.state is BreakerState.CLOSED


@pytest.mark.parametrize(
    "reason", ["RATE_LIMITED", "TENANT_CONCURRENCY", "CONNECTION_STREAMS", "LLM_BUDGET_EXHAUSTED"]
)
def test_one_tenants_limits_never_open_it_for_every_tenant(reason):
    b = breaker(Clock())
    for _ in range(10):
        b.record_failure(ResourceExhausted("over its limit", reason=reason))
    assert b.state is BreakerState.CLOSED
    for _ in range(10):  # shedding under load is the dependency's own trouble
        b.record_failure(ResourceExhausted("overloaded", reason="CACHED_ONLY"))
    assert b.state is BreakerState.OPEN


def test_half_open_lets_a_bounded_number_of_probes_through_then_decides():
    clock = Clock()
    b = breaker(clock, half_open_probes=1)
    for _ in range(3):
        b.record_failure(DOWN)
    clock.now = 4.9
    assert not b.allow()
    clock.now = 5.0
    assert b.state is BreakerState.HALF_OPEN
    assert b.allow() and not b.allow()  # one probe at a time
    b.record_failure(DOWN)
    assert b.state is BreakerState.OPEN  # the probe failed: wait again
    clock.now = 10.0
    assert b.allow()
    b.record_success()
    assert b.state is BreakerState.CLOSED and b.allow()


def test_a_probe_that_ends_without_verdict_frees_its_slot():
    clock = Clock()
    b = breaker(clock)
    for _ in range(3):
        b.record_failure(DOWN)
    clock.now = 5.0
    assert b.allow()
    b.release_probe()
    assert b.allow()


async def hang() -> None:
    await asyncio.sleep(3600)


async def test_calls_cut_off_by_their_deadline_open_the_breaker():
    # A hung dependency answers nothing: its calls end only by the caller's timeout.
    b = breaker(Clock())
    for _ in range(3):
        with context.tighter_deadline(0.01) as granted, pytest.raises(TimeoutError):
            async with asyncio.timeout(granted):
                await guarded(b, hang)
    assert b.state is BreakerState.OPEN


async def test_a_caller_that_gives_up_early_says_nothing_about_the_dependency():
    b = breaker(Clock())
    for _ in range(5):
        with context.tighter_deadline(60):
            task = asyncio.ensure_future(guarded(b, hang))
            await asyncio.sleep(0.01)
            task.cancel()  # the client went away long before the deadline
            with pytest.raises(asyncio.CancelledError):
                await task
    assert b.state is BreakerState.CLOSED


class Flaky(Exception):
    def __init__(self, retry_after: float | None = None) -> None:
        self.retry_after = retry_after


async def run(policy: RetryPolicy, failures: list[BaseException], budget_s: float) -> int:
    attempts = 0
    async for attempt in retrying(policy, lambda e: isinstance(e, Flaky), budget_s=budget_s):
        with attempt:
            attempts += 1
            if failures:
                raise failures.pop(0)
    return attempts


async def test_retries_until_success_within_the_attempt_limit():
    policy = RetryPolicy("t", attempts=3, initial_s=0.001, max_s=0.002)
    assert await run(policy, [Flaky(), Flaky()], budget_s=5) == 3
    with pytest.raises(Flaky):
        await run(policy, [Flaky(), Flaky(), Flaky()], budget_s=5)


async def test_errors_that_cannot_succeed_are_not_retried():
    policy = RetryPolicy("t", attempts=3, initial_s=0.001, max_s=0.002)
    with pytest.raises(ValueError):
        await run(policy, [ValueError("bad input")], budget_s=5)


async def test_no_retry_waits_into_the_deadline():
    policy = RetryPolicy("t", attempts=5, initial_s=0.001, max_s=0.002)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(Flaky):
        # Retry-After of 1 s does not fit a 0.5 s budget: give up at once instead of waiting.
        await run(policy, [Flaky(retry_after=1.0), Flaky()], budget_s=0.5)
    assert loop.time() - started < 0.5


def test_a_failure_its_dependency_is_not_blamed_for_moves_no_breaker():
    """One replica of a service failed while another serves: the service's breaker stays
    closed however often that happens (the replica's own breaker ejects it)."""
    breaker = CircuitBreaker("retrieval", BreakerPolicy(consecutive_failures=2))
    for _ in range(5):
        with pytest.raises(Unavailable), calling(breaker, blamed=lambda: False):
            raise Unavailable("that replica hangs")
    assert breaker.state is BreakerState.CLOSED
    for _ in range(2):
        with pytest.raises(Unavailable), calling(breaker):
            raise Unavailable("every replica hangs")
    assert breaker.state is BreakerState.OPEN
