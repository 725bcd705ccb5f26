"""What every command shares: the console, the caller's key on each call, and how a failed
call is told."""

from __future__ import annotations

import grpc
from rich.console import Console

console = Console()


def bearer(api_key: str) -> list[tuple[str, str]]:
    """The metadata that sends `api_key` to QueryService."""
    return [("authorization", f"Bearer {api_key}")]


def fail(exc: grpc.aio.AioRpcError) -> int:
    """Print a failed call as its status and message (never a traceback); exit status 1."""
    console.print(f"[red]{exc.code().name}[/red]: {exc.details()}")
    return 1
