"""Cuts short the waits of calls in flight once the process has to stop by a deadline."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

# Left between the end of every wait and the end of the grace period, so that the answer
# made from what a call has by then (a degraded one) is sent before the server cancels it.
REPLY_MARGIN_S = 0.5


class Drain:
    """`timeout()` is `asyncio.timeout()`, ending no later than the drain deadline once set.

    On SIGTERM a server lets calls in flight run for its grace period, then cancels them
    with a bare UNAVAILABLE. Waits taken through here end before that instead, as if their
    budget had run out, so the call falls back the way it would when late, and answers.
    """

    def __init__(self) -> None:
        self._deadline: float | None = None
        self._timeouts: set[asyncio.Timeout] = set()

    @contextlib.asynccontextmanager
    async def timeout(self, seconds: float) -> AsyncIterator[None]:
        """Like `asyncio.timeout(seconds)`; raises TimeoutError when cut short, too."""
        async with asyncio.timeout(seconds) as timeout:
            self._shorten(timeout)
            self._timeouts.add(timeout)
            try:
                yield
            finally:
                self._timeouts.discard(timeout)

    def begin(self, grace_s: float) -> None:
        """The process stops in `grace_s`: every wait, now or later, ends a margin before."""
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + max(0.0, grace_s - REPLY_MARGIN_S)
        for timeout in list(self._timeouts):
            self._shorten(timeout)

    def _shorten(self, timeout: asyncio.Timeout) -> None:
        if self._deadline is None or timeout.expired():
            return
        when = timeout.when()
        if when is None or when > self._deadline:
            timeout.reschedule(self._deadline)
