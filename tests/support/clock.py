"""A clock the test moves by hand: pass it where code takes `clock=time.monotonic`."""

from __future__ import annotations


class Clock:
    """Reads `now`, which the test sets or advances."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
