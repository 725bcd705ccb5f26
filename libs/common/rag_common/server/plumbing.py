"""Health and reflection calls: keyless, so each holds one of the few keyless slots."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from rag_common import status
from rag_common.errors import DeadlineExceeded, InvalidArgument, RagError, ResourceExhausted
from rag_common.reasons import Reason
from rag_common.server.decoding import decoded, tolerant
from rag_common.server.keyless import IDLE_S, KeylessShare


def plumbing(handler: grpc.RpcMethodHandler, keyless: KeylessShare) -> grpc.RpcMethodHandler:
    """A health or reflection handler as it is, except that it holds one of the few slots
    keyless calls may (see keyless.py), a stream idle for `IDLE_S` is ended, and a request
    that does not parse ends as INVALID_ARGUMENT, not as UNKNOWN with a logged traceback."""

    async def refuse(ctx: grpc.aio.ServicerContext, error: RagError) -> None:
        code, message, trailers = status.encode(error)
        await ctx.abort(code, message, trailing_metadata=trailers)

    async def take_slot(ctx: grpc.aio.ServicerContext) -> None:
        try:
            give_back = keyless.take(ctx.peer())
        except ResourceExhausted as exc:
            await refuse(ctx, exc)
        ctx.add_done_callback(lambda _: give_back())

    async def check(request: Any, ctx: grpc.aio.ServicerContext) -> None:
        try:
            decoded(request)
        except InvalidArgument as exc:
            await refuse(ctx, exc)

    if handler.unary_unary:
        behavior = handler.unary_unary

        async def unary(request: Any, ctx: grpc.aio.ServicerContext) -> Any:
            await take_slot(ctx)
            await check(request, ctx)
            return await behavior(request, ctx)

        return grpc.unary_unary_rpc_method_handler(
            unary,
            request_deserializer=tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream:
        streaming = handler.unary_stream

        async def stream(request: Any, ctx: grpc.aio.ServicerContext) -> None:
            await take_slot(ctx)
            await check(request, ctx)
            await streaming(request, ctx)  # health's Watch, which writes for itself

        return grpc.unary_stream_rpc_method_handler(
            stream,
            request_deserializer=tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )
    if handler.stream_stream:  # reflection
        conversation = handler.stream_stream

        async def bidi(requests: AsyncIterator[Any], ctx: grpc.aio.ServicerContext):
            await take_slot(ctx)

            async def decoded() -> AsyncIterator[Any]:
                iterator = aiter(requests)
                while True:
                    try:
                        async with asyncio.timeout(IDLE_S):
                            request = await anext(iterator)
                    except StopAsyncIteration:
                        return
                    except TimeoutError:
                        await refuse(
                            ctx,
                            DeadlineExceeded(
                                f"no request for {IDLE_S:.0f} s: stream closed", reason=Reason.IDLE
                            ),
                        )
                    await check(request, ctx)
                    yield request

            async for message in conversation(decoded(), ctx):
                yield message

        return grpc.stream_stream_rpc_method_handler(
            bidi,
            request_deserializer=tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )
    return handler
