"""The server interceptor: one wrapper per call that composes the three ideas a call needs.

Decode tolerance (`decoding`), the request scope with identity and fair use
(`request_scope`), and the outcome's recording (`outcomes`) are modules of their own; this
module only puts them around each handler. One interceptor, not three: every layer of
gRPC's interceptor chain costs each call a wrapper and a coroutine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from rag_common.errors import PermissionDenied, RagError
from rag_common.health.signals import SignalWindow
from rag_common.security.audit import AuditLog
from rag_common.security.identity import Identity, metadata_dict
from rag_common.server import request_scope
from rag_common.server.decoding import decoded, decoded_stream, tolerant
from rag_common.server.fair_use import FairUse
from rag_common.server.keyless import KeylessShare
from rag_common.server.outcomes import CallOutcome, LogSampler
from rag_common.server.plumbing import plumbing
from rag_common.telemetry import tracing
from rag_common.telemetry.metrics import RpcMetrics

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
        self._sampler = LogSampler()

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
            return plumbing(handler, self._keyless)
        metadata = metadata_dict(details.invocation_metadata)
        try:
            identity = self._resolve_identity(method, metadata)
        except RagError as exc:
            # No span: a caller we do not know could otherwise have every refusal sampled
            # (its traceparent's flag decides) and fill the collector.
            return self._refusal(method, handler, exc, metadata)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(method, handler.unary_unary, identity, metadata),
                request_deserializer=tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(method, handler.unary_stream, identity, metadata),
                request_deserializer=tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary:  # the handler reads the request stream itself
            return grpc.stream_unary_rpc_method_handler(
                self._wrap_unary(
                    method, handler.stream_unary, identity, metadata, client_stream=True
                ),
                request_deserializer=tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        return handler  # no bidi-streaming RPCs in rag.v1

    def _refusal(
        self,
        method: str,
        handler: grpc.RpcMethodHandler,
        refused: RagError,
        metadata: dict[str, str],
    ) -> grpc.RpcMethodHandler:
        """A handler that ends the call with `refused` without reading a request: declared
        request-streaming whatever the method, so gRPC leaves the request unread."""

        async def refuse(requests: Any, ctx: grpc.aio.ServicerContext) -> Any:
            call = self._call(method)
            caller = refused.caller if isinstance(refused, PermissionDenied) else None
            request_scope.enter(ctx, caller, metadata)
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

    def _call(self, method: str) -> CallOutcome:
        timed = not method.startswith(self._untimed)
        return CallOutcome(
            method, self._metrics, self._signals, self._sampler, timed=timed, audit=self._audit
        )

    def _wrap_unary(
        self,
        method: str,
        behavior: Callable[..., Awaitable[Any]],
        identity: Identity | None,
        metadata: dict[str, str],
        *,
        client_stream: bool = False,
    ):
        async def unary(request: Any, ctx: grpc.aio.ServicerContext) -> Any:
            with tracing.server_span(method, metadata):
                call = self._call(method)
                try:
                    await request_scope.admit(ctx, identity, metadata, self._fair_use)
                    request = decoded_stream(request) if client_stream else decoded(request)
                    response = await behavior(call.note_request(request), ctx)
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
        metadata: dict[str, str],
    ):
        async def stream(request: Any, ctx: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            with tracing.server_span(method, metadata):
                call = self._call(method)
                try:
                    await request_scope.admit(
                        ctx, identity, metadata, self._fair_use, streaming=True
                    )
                    async for message in behavior(call.note_request(decoded(request)), ctx):
                        yield message
                except BaseException as exc:
                    await call.abort(ctx, exc)
                call.done("OK")

        return stream
