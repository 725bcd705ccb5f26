"""A circuit breaker: closed / open / half-open, for one dependency.

Written here rather than taken from a library: pybreaker's async support is Tornado-based
and aiobreaker is unmaintained, while what we need (a count-based sliding window with a
minimum number of calls, a consecutive-failure trip, bounded half-open probes, a choice of
which errors count, an injectable clock) is one small class that tests can drive exactly.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from rag_common import context
from rag_common.errors import (
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from rag_common.reasons import Reason

log = logging.getLogger(__name__)
T = TypeVar("T")


class BreakerState(enum.Enum):
    """Where a breaker stands."""

    CLOSED = "closed"  # calls flow; outcomes are counted
    OPEN = "open"  # calls are refused until the recovery timeout passes
    HALF_OPEN = "half_open"  # a few probe calls decide between closed and open


@dataclass(frozen=True)
class BreakerPolicy:
    """When a breaker opens and how it recovers."""

    window: int = 20  # outcomes remembered
    min_calls: int = 5  # no failure-rate decision before this many outcomes
    failure_rate: float = 0.5  # open at or above this share of failures in the window
    consecutive_failures: int = 5  # ...or after this many failures in a row
    recovery_s: float = 10.0  # how long an open breaker refuses calls
    half_open_probes: int = 1  # calls let through at once while half-open


# Refusals that concern one tenant or caller (its rate, its share, its budget), not the
# dependency's health: counted, one tenant over its limits would cut off every other.
TENANT_LIMITS = frozenset(
    {
        Reason.RATE_LIMITED,
        Reason.TENANT_CONCURRENCY,
        Reason.CONNECTION_STREAMS,
        Reason.LLM_BUDGET_EXHAUSTED,
    }
)


def counts_as_failure(exc: BaseException) -> bool:
    """Default rule: the caller's own mistakes (bad input, a name that names nothing, a
    credential or role it lacks, a method the replica's release does not have) and its
    tenant's limits never open a breaker; everything else does."""
    if isinstance(exc, ResourceExhausted) and exc.reason in TENANT_LIMITS:
        return False
    # A lookup of something that does not exist is the caller's mistake too.
    return not isinstance(
        exc, InvalidArgument | NotFound | Unauthenticated | PermissionDenied | Unimplemented
    )


class CircuitBreaker:
    """Tracks one dependency's recent outcomes and decides whether to call it at all.

    Use `allow()` before a call (False: skip the dependency), then exactly one of
    `record_success()` / `record_failure(exc)` after it.
    """

    def __init__(
        self,
        name: str,
        policy: BreakerPolicy | None = None,
        *,
        counts: Callable[[BaseException], bool] = counts_as_failure,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.policy = policy or BreakerPolicy()
        self._counts = counts
        self._clock = clock
        self._outcomes: deque[bool] = deque(maxlen=self.policy.window)  # True = failure
        self._consecutive = 0
        self._state = BreakerState.CLOSED
        self._opened_at = 0.0
        self._probes = 0
        # Moves into each state since start, for metrics (rag_breaker_transitions_total).
        self.transitions: Counter[str] = Counter()

    @property
    def state(self) -> BreakerState:
        """The current state (an open breaker turns half-open once its recovery time passed)."""
        if self._state is BreakerState.OPEN and self._recovered():
            self._move(BreakerState.HALF_OPEN)
        return self._state

    def peek(self) -> BreakerState:
        """The state `state` would report, without moving it: safe from a scrape thread."""
        if self._state is BreakerState.OPEN and self._recovered():
            return BreakerState.HALF_OPEN
        return self._state

    def _recovered(self) -> bool:
        return self._clock() - self._opened_at >= self.policy.recovery_s

    def allow(self) -> bool:
        """Whether a call may go to the dependency now."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and self._probes < self.policy.half_open_probes:
            self._probes += 1
            return True
        return False

    def admit(self) -> None:
        """Like `allow()`, but raise Unavailable(CIRCUIT_OPEN) instead of returning False."""
        if not self.allow():
            raise Unavailable(
                f"{self.name} is failing; calls are paused while it recovers",
                reason=Reason.CIRCUIT_OPEN,
                metadata={"dependency": self.name},
            )

    def record_success(self) -> None:
        """A call succeeded."""
        self._consecutive = 0
        if self._state is BreakerState.HALF_OPEN:
            self._move(BreakerState.CLOSED)
            return
        self._outcomes.append(False)

    def record_failure(self, exc: BaseException) -> None:
        """A call failed with `exc`; only failures the policy counts move the breaker."""
        if not self._counts(exc):
            self.release_probe()
            return
        if self._state is BreakerState.HALF_OPEN:
            self._move(BreakerState.OPEN)
            return
        self._consecutive += 1
        self._outcomes.append(True)
        failures = sum(self._outcomes)
        if self._consecutive >= self.policy.consecutive_failures or (
            len(self._outcomes) >= self.policy.min_calls
            and failures / len(self._outcomes) >= self.policy.failure_rate
        ):
            self._move(BreakerState.OPEN)

    def release_probe(self) -> None:
        """A half-open probe ended without a verdict (cancelled, or an uncounted error)."""
        if self._state is BreakerState.HALF_OPEN and self._probes > 0:
            self._probes -= 1

    def _move(self, state: BreakerState) -> None:
        if state is self._state:
            return
        log.warning(
            "circuit breaker state changed",
            extra={"breaker": self.name, "from": self._state.value, "to": state.value},
        )
        self._state = state
        self._probes = 0
        self.transitions[state.value] += 1
        if state is BreakerState.OPEN:
            self._opened_at = self._clock()
        if state is BreakerState.CLOSED:
            self._outcomes.clear()
            self._consecutive = 0


def record_cancelled(breaker: CircuitBreaker) -> None:
    """A call was cancelled: a failure if its deadline cut it off, else no verdict.

    A hung dependency never answers, so its calls end by cancellation from the caller's
    timeout; counting those is what lets a breaker open on a hang, not only on errors.
    """
    if context.deadline_passed():
        breaker.record_failure(DeadlineExceeded(f"{breaker.name} did not answer in time"))
    else:  # the caller went away: says nothing about the dependency
        breaker.release_probe()


@contextmanager
def calling(
    breaker: CircuitBreaker,
    *,
    timeouts_count: bool = True,
    admitted: bool = False,
    blamed: Callable[[], bool] = lambda: True,
) -> Iterator[None]:
    """One call through `breaker`: refused at once while open (unless `admitted` already),
    its outcome recorded after.

    `timeouts_count=False` is for a call its caller gave less time than the dependency can
    be expected to need: running out of it is the caller's doing (STYLE rule 19), so a
    timeout or a cancellation by the deadline gives no verdict. Other failures still count,
    unless `blamed()` says this breaker's dependency is not to blame (one replica of a
    service failed while others serve: that replica's own breaker takes it).
    """
    if not admitted:
        breaker.admit()
    try:
        yield
    except Exception as exc:
        if isinstance(exc, DeadlineExceeded | TimeoutError) and not timeouts_count:
            breaker.release_probe()
        elif blamed():
            breaker.record_failure(exc)
        else:
            breaker.release_probe()
        raise
    except BaseException:
        if timeouts_count and blamed():
            record_cancelled(breaker)
        else:
            breaker.release_probe()
        raise
    breaker.record_success()


async def guarded(breaker: CircuitBreaker, call: Callable[[], Awaitable[T]]) -> T:
    """Run `call` through `breaker` (see `calling`)."""
    with calling(breaker):
        return await call()
