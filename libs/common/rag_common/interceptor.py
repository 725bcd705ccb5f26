"""The server interceptor: opens the request scope and maps errors to rich gRPC statuses."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from rag_common import context, status, tracing
from rag_common.audit import AuditLog
from rag_common.errors import (
    DeadlineExceeded,
    InvalidArgument,
    PermissionDenied,
    RagError,
    ResourceExhausted,
)
from rag_common.fair_use import FairUse
from rag_common.identity import REQUEST_ID_KEY, Identity, metadata_dict
from rag_common.keyless import IDLE_S, KeylessShare
from rag_common.metrics import RpcMetrics
from rag_common.reasons import Reason
from rag_common.signals import SignalWindow

log = logging.getLogger(__name__)

# Resolves the caller of `method` from its metadata; may raise Unauthenticated or
# PermissionDenied. Internal services verify the suite's signed credentials (credentials.py);
# QueryService checks API keys.
IdentityResolver = Callable[[str, dict[str, str]], Identity | None]

# Calls to these are plumbing, not requests: no identity, no request log. Health details
# (breakers, providers, error counts) are not: they need a credential like any call.
_PLUMBING = ("/grpc.health.v1.", "/grpc.reflection.")


class ServerInterceptor(grpc.aio.ServerInterceptor):
    """Sets request id, deadline and identity for each call and turns errors into statuses.

    Known errors keep their code, message and reason; anything else is logged with its
    traceback and reaches the caller only as INTERNAL "internal error".
    """

    def __init__(
        self,
        resolve_identity: IdentityResolver,
        metrics: RpcMetrics,
        signals: SignalWindow,
        keyless: KeylessShare,
        *,
        untimed: tuple[str, ...] = (),
        fair_use: FairUse | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self._resolve_identity = resolve_identity
        self._keyless = keyless
        self._metrics = metrics
        self._signals = signals
        self._fair_use = fair_use
        self._audit = audit
        # Method prefixes whose calls are long by nature (bulk ingest): counted, but not
        # latency samples for the p95 signal.
        self._untimed = untimed
        self._sampler = _LogSampler()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        """Wrap the handler of one call.

        The caller's credential is checked here, from the call's metadata alone: a call
        refused gets a handler that never reads its request, so a keyless caller cannot
        make the process take in megabytes only to be told no.
        """
        handler = await continuation(details)
        method = details.method
        if handler is None:
            return handler
        if method.startswith(_PLUMBING):
            return _plumbing(handler, self._keyless)
        try:
            identity = self._resolve_identity(method, metadata_dict(details.invocation_metadata))
        except RagError as exc:
            return self._refusal(method, handler, exc)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(method, handler.unary_unary, identity),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(method, handler.unary_stream, identity),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary:  # the handler reads the request stream itself
            return grpc.stream_unary_rpc_method_handler(
                self._wrap_unary(method, handler.stream_unary, identity, client_stream=True),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        return handler  # no bidi-streaming RPCs in rag.v1

    def _refusal(
        self, method: str, handler: grpc.RpcMethodHandler, refused: RagError
    ) -> grpc.RpcMethodHandler:
        """A handler that ends the call with `refused` without reading a request: declared
        request-streaming whatever the method, so gRPC leaves the request unread."""

        async def refuse(requests: Any, ctx: grpc.aio.ServicerContext) -> Any:
            call = self._call(method)
            self._enter_scope(
                ctx, refused.caller if isinstance(refused, PermissionDenied) else None
            )
            await call.abort(ctx, refused)

        if handler.unary_stream or handler.stream_stream:

            async def refuse_stream(requests: Any, ctx: grpc.aio.ServicerContext):
                await refuse(requests, ctx)
                yield  # never reached: makes this an async generator, as gRPC expects

            return grpc.stream_stream_rpc_method_handler(
                refuse_stream, response_serializer=handler.response_serializer
            )
        return grpc.stream_unary_rpc_method_handler(
            refuse, response_serializer=handler.response_serializer
        )

    def _call(self, method: str) -> _Call:
        timed = not method.startswith(self._untimed)
        return _Call(
            method, self._metrics, self._signals, self._sampler, timed=timed, audit=self._audit
        )

    async def _admit(
        self, ctx: grpc.aio.ServicerContext, identity: Identity | None, *, streaming: bool = False
    ) -> None:
        """Open the request scope for the caller and take its fair-use slot."""
        self._enter_scope(ctx, identity)
        if self._fair_use is not None:
            release = await self._fair_use.admit(identity, ctx.peer(), streaming=streaming)
            # Held until the call is over for gRPC, not only for the handler: a stream whose
            # reader stalls keeps its slot (and counts against its tenant) until it ends.
            ctx.add_done_callback(lambda _: release())

    def _enter_scope(self, ctx: grpc.aio.ServicerContext, identity: Identity | None) -> None:
        metadata = metadata_dict(ctx.invocation_metadata())
        remaining = ctx.time_remaining()
        request_id = _request_id(metadata.get(REQUEST_ID_KEY, ""))
        context.enter(
            context.RequestScope(
                request_id=request_id,
                deadline=None if remaining is None else time.monotonic() + remaining,
            )
        )
        tracing.annotate(request_id=request_id)  # a trace can be found by its request id
        context.set_identity(identity)

    def _wrap_unary(
        self,
        method: str,
        behavior: Callable[..., Awaitable[Any]],
        identity: Identity | None,
        *,
        client_stream: bool = False,
    ):
        async def unary(request: Any, ctx: grpc.aio.ServicerContext) -> Any:
            call = self._call(method)
            try:
                await self._admit(ctx, identity)
                request = _decoded_stream(request) if client_stream else _decoded(request)
                call.request = request
                response = await behavior(request, ctx)
            except BaseException as exc:
                await call.abort(ctx, exc)
            call.done("OK")
            return response

        return unary

    def _wrap_stream(
        self,
        method: str,
        behavior: Callable[..., AsyncIterator[Any]],
        identity: Identity | None,
    ):
        async def stream(request: Any, ctx: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            call = self._call(method)
            try:
                await self._admit(ctx, identity, streaming=True)
                call.request = _decoded(request)
                async for message in behavior(call.request, ctx):
                    yield message
            except BaseException as exc:
                await call.abort(ctx, exc)
            call.done("OK")

        return stream


# A caller's request id is kept (it joins their logs to ours) only if it looks like one:
# it is written on every log line and forwarded on every call.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def _request_id(given: str) -> str:
    return given if _REQUEST_ID.fullmatch(given) else context.new_request_id()


class _Undecodable:
    """Stands for a request message that did not parse (see `_tolerant`)."""


_UNDECODABLE = _Undecodable()


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    # grpc turns a deserializer's exception into UNKNOWN "Unexpected <DecodeError>" and an
    # ERROR log with a traceback, for any caller, key or not. A marker instead lets the
    # call end as INVALID_ARGUMENT like any other bad input.
    if deserialize is None:
        return None

    def decode(data: bytes) -> Any:
        try:
            return deserialize(data)
        except DecodeError:
            return _UNDECODABLE

    return decode


def _decoded(request: Any) -> Any:
    if request is _UNDECODABLE:
        raise InvalidArgument("request", "not a valid protobuf message for this method")
    return request


async def _decoded_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        yield _decoded(request)


def _plumbing(handler: grpc.RpcMethodHandler, keyless: KeylessShare) -> grpc.RpcMethodHandler:
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
        if request is _UNDECODABLE:
            await refuse(
                ctx, InvalidArgument("request", "not a valid protobuf message for this method")
            )

    if handler.unary_unary:
        behavior = handler.unary_unary

        async def unary(request: Any, ctx: grpc.aio.ServicerContext) -> Any:
            await take_slot(ctx)
            await check(request, ctx)
            return await behavior(request, ctx)

        return grpc.unary_unary_rpc_method_handler(
            unary,
            request_deserializer=_tolerant(handler.request_deserializer),
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
            request_deserializer=_tolerant(handler.request_deserializer),
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
            request_deserializer=_tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )
    return handler


class _LogSampler:
    """At most one log line a second per (method, code) for callers' errors.

    Every call is still counted in the metrics; the log only needs to show that it
    happens, and one client sending garbage in a loop must not fill the disk.
    """

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], float] = {}
        self._suppressed: dict[tuple[str, str], int] = {}

    def admit(self, method: str, code: str) -> int | None:
        """None: do not log this one; else how many were left out since the last line."""
        if code not in _CALLER_ERRORS:
            return 0
        key, now = (method, code), time.monotonic()
        if now - self._last.get(key, -1.0) < 1.0:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._suppressed.pop(key, 0)


_CALLER_ERRORS = {
    "INVALID_ARGUMENT",
    "UNAUTHENTICATED",
    "PERMISSION_DENIED",
    "NOT_FOUND",
    "RESOURCE_EXHAUSTED",
}


class _Call:
    """One call's bookkeeping: its log line, metrics and signals, written exactly once."""

    def __init__(
        self,
        method: str,
        metrics: RpcMetrics,
        signals: SignalWindow,
        sampler: _LogSampler,
        *,
        timed: bool,
        audit: AuditLog | None = None,
    ) -> None:
        self._method = method
        self._audit = audit
        self.request: Any = None  # once decoded: what the audit line names
        self._metrics = metrics
        self._signals = signals
        self._sampler = sampler
        self._timed = timed
        self._started = time.perf_counter()
        metrics.started(method)

    def done(self, code: str, reason: str = "", **extra: Any) -> None:
        """Log and count the call as ended with `code` (and `reason`, for an error)."""
        seconds = time.perf_counter() - self._started
        self._metrics.finished(self._method, code, seconds, reason)
        self._signals.record(code, seconds, timed=self._timed)
        if self._audit is not None:
            self._audit.record(self._method, context.caller(), self.request, code, reason)
        if reason:
            extra["reason"] = reason
        suppressed = self._sampler.admit(self._method, code)
        if suppressed is None:
            return
        if suppressed:
            extra["suppressed"] = suppressed  # lines left out since the last one
        _log_done(self._method, code, seconds * 1000, **extra)

    async def abort(self, ctx: grpc.aio.ServicerContext, exc: BaseException) -> None:
        """End the call with the status `exc` stands for (always raises)."""
        if not isinstance(exc, Exception):  # cancelled, or a stream closed: caller gone
            self.done("CANCELLED")
            raise exc
        if isinstance(exc, grpc.aio.AbortError):  # the handler ended the call itself
            code = ctx.code()
            self.done(getattr(code, "name", "UNKNOWN"))  # or it stays "in flight" forever
            raise exc
        if not isinstance(exc, RagError):
            log.error("unhandled error in %s", self._method, exc_info=exc)
            exc = RagError("internal error")
        code, message, trailers = status.encode(exc)
        self.done(code.name, reason=exc.reason)
        await ctx.abort(code, message, trailing_metadata=trailers)


# A call this slow is logged even when it succeeds.
SLOW_CALL_MS = 1000.0


def _log_done(method: str, code: str, elapsed_ms: float, **extra: Any) -> None:
    elapsed_ms = round(elapsed_ms, 2)
    # Every call at INFO would cost an internal service about a tenth of its throughput
    # (measured on EmbeddingService); failures and slow calls stay visible at INFO.
    level = logging.DEBUG if code == "OK" and elapsed_ms < SLOW_CALL_MS else logging.INFO
    if log.isEnabledFor(level):
        log.log(
            level, "rpc", extra={"method": method, "code": code, "elapsed_ms": elapsed_ms, **extra}
        )
