"""Retry policies for external dependencies, by name.

One rule: a call is retried at exactly one layer. Internal gRPC calls are retried by gRPC's
own policy (channel.py); these policies are for vendors, whose SDK retries are turned off.
Backoff is exponential with full jitter, an error may ask for a longer wait (Retry-After),
and no attempt starts if the wait would run past the caller's deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception
from tenacity.wait import wait_random_exponential

from rag_common import context


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry one kind of dependency."""

    name: str
    attempts: int  # total tries, the first included
    initial_s: float  # first backoff ceiling; doubles each try (full jitter below it)
    max_s: float  # largest backoff ceiling
    max_retry_after_s: float = 30.0  # longest server-requested wait we honour


LLM_PROVIDER = RetryPolicy("llm_provider", attempts=3, initial_s=0.2, max_s=2.0)
# Redis is only ever a cache here: a failed read is a miss, never retried (a retry would cost
# more than recomputing), and its breaker stops calls while it is down (tiered_cache.py).


def retry_after(exc: BaseException | None) -> float | None:
    """Seconds an error asks us to wait (an attribute set by the adapter from Retry-After)."""
    return getattr(exc, "retry_after", None)


def retrying(
    policy: RetryPolicy,
    is_retryable: Callable[[BaseException], bool],
    *,
    budget_s: float | None = None,
) -> AsyncRetrying:
    """An AsyncRetrying for `policy` that stops at the request's deadline.

    `budget_s` caps the time for all attempts; by default the request's remaining deadline.
    """
    jitter = wait_random_exponential(multiplier=policy.initial_s, max=policy.max_s)
    started = time.monotonic()
    budget = budget_s if budget_s is not None else context.remaining_seconds(float("inf"))

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        asked = retry_after(exc)
        if asked is not None and asked <= policy.max_retry_after_s:
            return asked
        return jitter(state)

    def stop(state: RetryCallState) -> bool:
        if state.attempt_number >= policy.attempts:
            return True
        exc = state.outcome.exception() if state.outcome else None
        asked = retry_after(exc)
        if asked is not None and asked > policy.max_retry_after_s:
            return True
        # Never sleep into the deadline: the attempt after the wait would have no time left.
        # (tenacity computes the wait before asking whether to stop.)
        left = budget - (time.monotonic() - started)
        return state.upcoming_sleep >= left

    return AsyncRetrying(retry=retry_if_exception(is_retryable), wait=wait, stop=stop, reraise=True)
