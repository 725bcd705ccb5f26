"""Maintenance mode: an operator switch that makes the public API refuse calls clearly."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from rag_common.errors import InvalidArgument, Unavailable

log = logging.getLogger(__name__)

DEFAULT_MESSAGE = "the service is under maintenance"
MAX_MESSAGE_CHARS = 500


class Maintenance:
    """Whether maintenance is on; `on_change` lets health follow it (NOT_SERVING while on)."""

    def __init__(self) -> None:
        self.enabled = False
        self.message = ""
        self.on_change: Callable[[bool], Awaitable[None]] | None = None

    def check(self) -> None:
        """Raise Unavailable(MAINTENANCE) while maintenance is on."""
        if self.enabled:
            raise Unavailable(self.message, reason="MAINTENANCE")

    def reason(self) -> str | None:
        """The maintenance message while on, else None."""
        return self.message if self.enabled else None

    async def set(self, enabled: bool, message: str = "") -> None:
        """Turn maintenance on or off."""
        if len(message) > MAX_MESSAGE_CHARS:
            raise InvalidArgument("message", f"at most {MAX_MESSAGE_CHARS} characters")
        self.enabled = enabled
        self.message = (message or DEFAULT_MESSAGE) if enabled else ""
        log.warning("maintenance mode", extra={"enabled": enabled, "notice": self.message})
        if self.on_change is not None:
            await self.on_change(enabled)
