"""Streams whose reader stops reading are cut after a write has waited `timeout_s`.

A client that opens a stream and never reads fills its HTTP/2 window; the server's next
write then waits for ever, and the call holds its server slot and its tenant's share until
the connection closes. This interceptor writes each message itself, and when one write has
not gone out within the timeout it cancels the call, which frees both at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from rag_common.telemetry.metrics import RpcMetrics

log = logging.getLogger(__name__)


class StallGuard(grpc.aio.ServerInterceptor):
    """Cancels a server-streaming call when one of its writes stalls past `timeout_s`.

    It must come first among a server's interceptors: it drives the stream that the
    others (tracing, errors) yield.
    """

    def __init__(self, timeout_s: float, metrics: RpcMetrics) -> None:
        self._timeout_s = timeout_s
        self._metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        """Wrap server-streaming handlers; leave the others as they are."""
        handler = await continuation(details)
        if handler is None or not handler.unary_stream:
            return handler
        return grpc.unary_stream_rpc_method_handler(
            self._guarded(details.method, handler.unary_stream),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _guarded(self, method: str, behavior: Callable[..., AsyncIterator[Any]]):
        # A coroutine that writes, not a generator that yields: only then is the write
        # ours to time, and the call ours to cancel.
        async def stream(request: Any, ctx: grpc.aio.ServicerContext) -> None:
            messages = behavior(request, ctx)
            if not hasattr(messages, "__aiter__"):  # a handler that writes for itself
                await messages
                return
            try:
                async for message in messages:
                    await self._write(method, ctx, message)
            finally:
                await messages.aclose()

        return stream

    async def _write(self, method: str, ctx: grpc.aio.ServicerContext, message: Any) -> None:
        task = asyncio.current_task()
        stalled = False

        def cut() -> None:
            nonlocal stalled
            stalled = True
            task.cancel()  # cancelling the call's task makes gRPC cancel the call itself

        timer = asyncio.get_running_loop().call_later(self._timeout_s, cut)
        try:
            await ctx.write(message)
        except asyncio.CancelledError:
            if stalled:
                self._metrics.stalled(method)
                log.warning(
                    "stream cut: its reader stopped reading",
                    extra={"method": method, "peer": ctx.peer(), "waited_s": self._timeout_s},
                )
            raise
        finally:
            timer.cancel()
