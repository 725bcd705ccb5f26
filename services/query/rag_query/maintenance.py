"""Maintenance mode: an operator switch that makes the public API refuse calls clearly.

With Redis the switch is shared: turned on through any replica, every replica refuses
within `poll_s` (each reads it back that often); without Redis it is this process's own.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisError

from rag_common.errors import InvalidArgument, Unavailable
from rag_common.reasons import Reason

log = logging.getLogger(__name__)

DEFAULT_MESSAGE = "the service is under maintenance"
MAX_MESSAGE_CHARS = 500
SHARED_KEY = "rag:maintenance"


class Maintenance:
    """Whether maintenance is on; `on_change` lets health follow it (NOT_SERVING while on)."""

    def __init__(self, shared: Redis | RedisCluster | None = None, *, poll_s: float = 1.0):
        self.enabled = False
        self.message = ""
        self.on_change: Callable[[bool], Awaitable[None]] | None = None
        self._shared = shared
        self._poll_s = poll_s
        self._follower: asyncio.Task[None] | None = None

    def check(self) -> None:
        """Raise Unavailable(MAINTENANCE) while maintenance is on."""
        if self.enabled:
            raise Unavailable(self.message, reason=Reason.MAINTENANCE)

    def reason(self) -> str | None:
        """The maintenance message while on, else None."""
        return self.message if self.enabled else None

    async def set(self, enabled: bool, message: str = "") -> None:
        """Turn maintenance on or off (for every replica, when shared)."""
        if len(message) > MAX_MESSAGE_CHARS:
            raise InvalidArgument("message", f"at most {MAX_MESSAGE_CHARS} characters")
        message = (message or DEFAULT_MESSAGE) if enabled else ""
        if self._shared is not None:
            try:
                await self._shared.set(
                    SHARED_KEY, json.dumps({"enabled": enabled, "message": message})
                )
            except (RedisError, OSError) as exc:
                # Half the replicas in maintenance and half not is worse than neither.
                raise Unavailable(
                    "maintenance could not be shared with the other replicas: redis is "
                    "unreachable; nothing was changed",
                    reason=Reason.MAINTENANCE_NOT_SHARED,
                ) from exc
        await self._apply(enabled, message)

    async def start(self) -> None:
        """Follow the shared switch (no-op without Redis)."""
        if self._shared is not None and self._follower is None:
            await self._refresh()
            self._follower = asyncio.create_task(self._follow(), name="maintenance")

    async def close(self) -> None:
        """Stop following the shared switch."""
        if self._follower is None:
            return
        # Cancelled inside a Redis call, the client may take the cancellation for its own
        # timeout and carry on: cancel again until the follower has really stopped.
        while not self._follower.done():
            self._follower.cancel()
            await asyncio.wait([self._follower], timeout=0.1)

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            await self._refresh()

    async def _refresh(self) -> None:
        try:
            stored = await self._shared.get(SHARED_KEY)
        except (RedisError, OSError):
            return  # keep the last known state; Redis coming back brings the current one
        state = json.loads(stored) if stored else {"enabled": False, "message": ""}
        if (state["enabled"], state["message"]) != (self.enabled, self.message):
            await self._apply(state["enabled"], state["message"])

    async def _apply(self, enabled: bool, message: str) -> None:
        changed = enabled != self.enabled
        self.enabled, self.message = enabled, message
        log.warning("maintenance mode", extra={"enabled": enabled, "notice": message})
        if changed and self.on_change is not None:
            await self.on_change(enabled)
