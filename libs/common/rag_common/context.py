"""Request-scoped values (request id, deadline, caller identity) carried in context variables.

The server interceptor sets them for each call, so core code and outbound clients can read
them without every function passing them along.
"""

from __future__ import annotations

import contextvars
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from rag_common.errors import DeadlineExceeded, Unauthenticated
from rag_common.reasons import Reason
from rag_common.security.identity import Identity

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("deadline", default=None)
_identity: contextvars.ContextVar[Identity | None] = contextvars.ContextVar(
    "identity", default=None
)


@dataclass(frozen=True)
class RequestScope:
    """What one inbound call knows about itself."""

    request_id: str
    deadline: float | None  # time.monotonic() value, or None when the caller set none


def new_request_id() -> str:
    """Return a fresh, short request id."""
    return uuid.uuid4().hex[:16]


def enter(scope: RequestScope) -> None:
    """Make `scope` current for the running task (each gRPC call runs in its own task)."""
    _request_id.set(scope.request_id)
    _deadline.set(scope.deadline)
    _identity.set(None)


def set_identity(identity: Identity | None) -> None:
    """Record who is calling, once the interceptor has resolved it."""
    _identity.set(identity)


def request_id() -> str:
    """Return the current request id, or an empty string outside a request."""
    return _request_id.get()


def current_identity() -> Identity:
    """Return the caller's identity, or raise `Unauthenticated` when there is none."""
    identity = _identity.get()
    if identity is None:
        raise Unauthenticated("no caller identity on this request", reason=Reason.MISSING_IDENTITY)
    return identity


def caller() -> Identity | None:
    """The caller's identity, or None (not resolved, or refused)."""
    return _identity.get()


def current_tenant() -> str:
    """The caller's tenant, or an empty string outside a call with an identity."""
    identity = _identity.get()
    return identity.tenant if identity is not None else ""


def has_deadline() -> bool:
    """Whether the current request has a deadline (its caller's, or one set inside)."""
    return _deadline.get() is not None


def deadline() -> float | None:
    """The current request's deadline (a time.monotonic() value), or None when it has none."""
    return _deadline.get()


def remaining_seconds(default: float) -> float:
    """Seconds left before the current deadline, or `default` when none is set.

    Raises `DeadlineExceeded` once the deadline has passed, so no outbound call starts late.
    """
    deadline = _deadline.get()
    if deadline is None:
        return default
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlineExceeded("the request's deadline has passed")
    return min(left, default)


def deadline_passed() -> bool:
    """Whether the current request's deadline has passed (False when it has none).

    Tells a call cut off by its deadline (the dependency's fault: it hung or was slow) from
    one cancelled because the caller went away (no verdict on the dependency).
    """
    deadline = _deadline.get()
    # asyncio may wake a timeout a clock tick before the deadline it was set from.
    return deadline is not None and time.monotonic() >= deadline - _CLOCK_SLACK_S


_CLOCK_SLACK_S = 0.005


@contextmanager
def tighter_deadline(seconds: float) -> Iterator[float]:
    """Within the block, the deadline is at most `seconds` from now; yields the seconds granted.

    Every outbound call made inside inherits it, which is how one stage of a request gets
    only its share of the budget.
    """
    now = time.monotonic()
    current = _deadline.get()
    deadline = now + seconds if current is None else min(current, now + seconds)
    _deadline.set(deadline)
    try:
        yield max(0.0, deadline - now)
    finally:
        # Not `reset(token)`: a stream cancelled mid-block is closed by asyncio in another
        # context, where a token from this one raises ValueError ("created in a different
        # Context") inside a task nobody awaits.
        _deadline.set(current)
