"""Hedged calls: a second attempt of an idempotent call once the first is slower than usual.

One replica of two hung (SIGSTOP) still accepts connections, so calls sent to it wait for
their whole deadline. Round-robin sends it every other call until outlier detection ejects
it (channel.py), and every such call would be a degraded answer. A hedge sends the same
call again after about its usual p95; round-robin gives it to the next replica, and the
first answer wins. A budget like gRPC's retry throttling keeps hedges to about a tenth of
calls, so a service that is slow everywhere is not sent twice the load.
"""

from __future__ import annotations

import asyncio
import bisect
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

_SAMPLES = 200  # recent successful attempts a p95 is read from
_MIN_SAMPLES = 20  # fewer: no hedging yet
MIN_DELAY_S = 0.02  # below this a hedge would mostly duplicate calls that were on time
# The message an attempt is cancelled with when another one answered first.
LOST_RACE = "another attempt answered first"


class LatencyWindow:
    """The durations of the last successful attempts of one method, and their p95."""

    def __init__(self) -> None:
        self._recent: deque[float] = deque(maxlen=_SAMPLES)
        self._sorted: list[float] = []

    def add(self, seconds: float) -> None:
        """One successful attempt took `seconds`."""
        if len(self._recent) == self._recent.maxlen:
            self._sorted.pop(bisect.bisect_left(self._sorted, self._recent[0]))
        self._recent.append(seconds)
        bisect.insort(self._sorted, seconds)

    def hedge_delay(self) -> float | None:
        """When to send a hedge: the p95 (at least MIN_DELAY_S); None before enough samples."""
        if len(self._sorted) < _MIN_SAMPLES:
            return None
        return max(MIN_DELAY_S, self._sorted[int(len(self._sorted) * 0.95)])


class HedgeBudget:
    """Tokens as in gRPC's retry throttling: a hedge costs one, a call answered without
    one earns `ratio`; hedging stops below half of `max_tokens`."""

    def __init__(self, max_tokens: float = 10.0, ratio: float = 0.1) -> None:
        self._max = max_tokens
        self._ratio = ratio
        self._tokens = max_tokens

    def take(self) -> bool:
        """Whether a hedge may be sent now (and pay for it)."""
        if self._tokens <= self._max / 2:
            return False
        self._tokens -= 1
        return True

    def earn(self) -> None:
        """A call was answered without a hedge."""
        self._tokens = min(self._max, self._tokens + self._ratio)


async def hedged(
    attempt: Callable[[], Awaitable[T]], delay_s: float | None, budget: HedgeBudget
) -> T:
    """`attempt()`, and once more if the first has not ended after `delay_s`; the first
    success wins and the other is cancelled. Both failing raises the later error."""
    first = asyncio.ensure_future(attempt())
    if delay_s is None:
        return await first
    tasks = {first}
    try:
        done, _ = await asyncio.wait(tasks, timeout=delay_s)
        if done:
            budget.earn()
            return first.result()
        if not budget.take():
            return await first
        tasks.add(asyncio.ensure_future(attempt()))
        error: BaseException | None = None
        while tasks:
            done, tasks = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task.exception() is None:
                    for loser in tasks:
                        loser.cancel(LOST_RACE)
                    tasks = set()
                    return task.result()
                error = task.exception()
        assert error is not None
        raise error
    finally:
        for task in tasks:  # the caller gave up: nobody won
            task.cancel()
