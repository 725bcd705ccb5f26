"""Shedding while busy: when this process's event loop is busy most of the time, the calls of
a tenant making more than its even share of recent calls are refused, so the other tenants'
calls do not queue behind them.

A fair gate orders the work of calls already being handled. It cannot help when one
tenant's calls are so cheap (cached answers) that handling them at all fills the event
loop: every other tenant's call then waits in gRPC's queue of calls not yet accepted,
behind that tenant's. Only fewer calls from that tenant help, and a refusal with a
RetryInfo delay is what makes a client send fewer. A lone tenant is never refused here: the
process is its own, however busy. Nor is a tenant none of whose recent calls overlapped: one
asking a question at a time makes many quick calls but queues nothing behind anyone (found
by the bench: such a tenant was refused while another's two long bulk-ingest calls kept the
loop busy).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable

from rag_common.errors import ResourceExhausted
from rag_common.reasons import Reason

# Calls counted for shares: the last two halves of this window. Long enough to hold a few
# calls of a tenant asking one question at a time; short enough to follow a flood that stops.
WINDOW_S = 1.0


class LoopBusy:
    """How busy the event loop's thread is: the share of wall time it spent on a CPU, over
    the last few `interval_s`. Read only from the loop's thread (it measures the thread it
    is read from), so no task of its own is needed: idle time between reads counts as idle."""

    def __init__(
        self,
        interval_s: float = 0.05,
        weight: float = 0.5,
        *,
        clock: Callable[[], float] = time.perf_counter,
        cpu: Callable[[], float] = time.thread_time,
    ) -> None:
        self._interval_s = interval_s
        self._weight = weight  # of the newest interval
        self._clock = clock
        self._cpu = cpu
        self._since: tuple[float, float] | None = None  # set at the first read, in its thread
        self._level = 0.0

    def level(self) -> float:
        """From 0 (idle) to 1 (on a CPU all the time)."""
        now = self._clock()
        if self._since is None:
            self._since = (now, self._cpu())
        wall = now - self._since[0]
        if wall >= self._interval_s:
            cpu = self._cpu()
            busy = min(1.0, (cpu - self._since[1]) / wall)
            self._level += self._weight * (busy - self._level)
            self._since = (now, cpu)
        return self._level


class BusyShedding:
    """Refuses a tenant's call while the loop is more than `threshold` busy and the tenant
    made more than an even share of the recent calls: with a chance rising from 0 at the
    threshold to 1 at `threshold + ramp`, so its calls thin out gradually instead of stopping
    and restarting together."""

    def __init__(
        self,
        threshold: float,
        ramp: float = 0.2,
        *,
        busy: Callable[[], float] | None = None,
        clock: Callable[[], float] = time.monotonic,
        chance: Callable[[], float] = random.random,
    ) -> None:
        self._threshold = threshold
        self._ramp = max(ramp, 1e-6)
        self._busy = busy or LoopBusy().level
        self._clock = clock
        self._chance = chance
        self._current: Counter[str] = Counter()  # calls in the half-window under way
        self._recent: Counter[str] = Counter()  # in it and the one before
        self._recent_total = 0
        # Tenants with two calls running at once, in the half-window under way, and in it
        # and the one before.
        self._overlapping: set[str] = set()
        self._recent_overlapping: set[str] = set()
        self._current_since = clock()

    def check(self, tenant: str) -> None:
        """Raise ResourceExhausted (TENANT_OVER_SHARE) if this call should be refused."""
        if self._threshold >= 1.0:
            return
        self._turn_window()
        tenants = len(self._recent)
        if tenants < 2 or self._recent[tenant] * tenants <= self._recent_total:
            return  # alone, or within an even share
        if tenant not in self._recent_overlapping:
            return  # one call at a time
        excess = (self._busy() - self._threshold) / self._ramp
        if excess > 0 and self._chance() < excess:
            raise ResourceExhausted(
                "this service is busy and your tenant is making more than its share of "
                "the calls; retry after the delay in RetryInfo",
                reason=Reason.TENANT_OVER_SHARE,
                # Spread out: refused clients coming back together would fill the loop again.
                retry_after_s=round(random.uniform(0.1, 0.3), 3),
            )

    def count(self, tenant: str, *, running: int) -> None:
        """Count an admitted call of `tenant`, which found `running` others of its tenant
        running. Refused calls are not counted: a refused tenant would look busier the more
        it is refused."""
        self._turn_window()
        self._current[tenant] += 1
        self._recent[tenant] += 1
        self._recent_total += 1
        if running:
            self._overlapping.add(tenant)
            self._recent_overlapping.add(tenant)

    def _turn_window(self) -> None:
        """Start a new half-window when the current one is over. Only tenants calling in
        the last two are kept, so memory follows the call rate, not the number of tenants."""
        now = self._clock()
        if now - self._current_since < WINDOW_S / 2:
            return
        fresh = now - self._current_since < WINDOW_S
        previous = self._current if fresh else Counter()
        self._current = Counter()
        self._recent = Counter(previous)
        self._recent_total = previous.total()
        self._recent_overlapping = self._overlapping if fresh else set()
        self._overlapping = set()
        self._current_since = now
