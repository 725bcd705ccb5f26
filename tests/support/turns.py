"""Let the event loop run until something has happened, a bounded number of turns."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(happened: Callable[[], bool], turns: int = 20) -> None:
    """Yield to the loop until `happened()` holds; fails after `turns` turns."""
    for _ in range(turns):
        if happened():
            return
        await asyncio.sleep(0)
    assert happened(), f"not within {turns} turns of the event loop"
