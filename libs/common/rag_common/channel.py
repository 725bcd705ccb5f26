"""Client channels to internal services, and the base class of every internal client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rag_common import context, status, tracing
from rag_common.breaker import BreakerState, CircuitBreaker, guarded, record_cancelled
from rag_common.credentials import Credentials
from rag_common.identity import REQUEST_ID_KEY, Identity
from rag_common.tls import TlsFiles

# Round-robin over every address the target resolves to, and let gRPC itself retry a call
# that found a replica unavailable (the only status that is always safe to retry: the call
# did not run). Nothing above this layer retries internal calls.
_SERVICE_CONFIG = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [{}],
                "retryPolicy": {
                    "maxAttempts": 3,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "0.5s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
    }
)


def channel_target(target: str) -> str:
    """Normalise a target: a comma-separated list of IP:port becomes one `ipv4:` target."""
    if "," in target and "://" not in target and not target.startswith(("ipv4:", "ipv6:")):
        addresses = [a.strip().replace("localhost:", "127.0.0.1:") for a in target.split(",")]
        return "ipv4:" + ",".join(addresses)
    return target


def open_channel(target: str, tls: TlsFiles | None = None) -> grpc.aio.Channel:
    """A channel with keepalive, round-robin and gRPC's own UNAVAILABLE retry; TLS with
    this process's client certificate when `tls` is given, else plaintext.

    `target` is `host:port`, several `ip:port` separated by commas, or `dns:///name:port`
    (a headless Kubernetes Service resolves to every replica).
    """
    options = [
        ("grpc.service_config", _SERVICE_CONFIG),
        ("grpc.enable_retries", 1),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        # gRPC's default reconnect backoff grows to 120 s, so a replica that restarted
        # could stay unused for minutes; cap it so recovery takes about a second.
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.min_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 1000),
        # A dns:/// target is resolved again when a server closes a connection for its
        # age (see ServiceSettings.max_connection_age_s); at most this often.
        ("grpc.dns_min_time_between_resolutions_ms", 5000),
        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ]
    # When tracing is on: each call's span, and the trace context in its metadata.
    interceptors = tracing.client_interceptors()
    if tls is None:
        return grpc.aio.insecure_channel(
            channel_target(target), options=options, interceptors=interceptors
        )
    return grpc.aio.secure_channel(
        channel_target(target),
        tls.channel_credentials(),
        options=options,
        interceptors=interceptors,
    )


class ServiceClient:
    """Calls one internal service: deadline, signed credential and request id on every call.

    A failed call is decoded into the project's own error, so the caller sees the same code
    and reason the remote service raised (or `Unavailable` naming the dependency). Calls go
    through the dependency's circuit breaker: while it is open they fail at once.
    """

    def __init__(
        self,
        channel: grpc.aio.Channel,
        dependency: str,
        timeout_s: float,
        breaker: CircuitBreaker | None = None,
        *,
        credentials: Credentials,
    ) -> None:
        self._channel = channel
        self._credentials = credentials
        self._dependency = dependency
        self._timeout_s = timeout_s
        self.breaker = breaker or CircuitBreaker(dependency)

    async def _unary(
        self, method: Callable[..., Any], request: Any, identity: Identity | None = None
    ) -> Any:
        async def call() -> Any:
            try:
                return await method(request, **self._call_options(identity))
            except grpc.aio.AioRpcError as exc:
                raise status.decode(exc, dependency=self._dependency) from None

        return await guarded(self.breaker, call)

    async def _stream(
        self, method: Callable[..., Any], request: Any, identity: Identity | None = None
    ) -> AsyncIterator[Any]:
        # A stream cannot go through guarded(); the same bookkeeping, spelled out.
        self.breaker.admit()
        call = method(request, **self._call_options(identity))
        try:
            async for message in call:
                yield message
        except grpc.aio.AioRpcError as exc:
            error = status.decode(exc, dependency=self._dependency)
            self.breaker.record_failure(error)
            raise error from None
        except BaseException:
            record_cancelled(self.breaker)
            raise
        finally:
            call.cancel()
        self.breaker.record_success()

    @property
    def dependency(self) -> str:
        """Name of the service this client calls."""
        return self._dependency

    async def health(self) -> str:
        """The service's standard health status; UNREACHABLE when it does not answer."""
        stub = health_pb2_grpc.HealthStub(self._channel)
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
        except grpc.aio.AioRpcError:
            return "UNREACHABLE"
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    def _call_options(self, identity: Identity | None) -> dict[str, Any]:
        metadata = [(REQUEST_ID_KEY, context.request_id() or context.new_request_id())]
        metadata += self._credentials.metadata(self._dependency, identity)
        return {
            "timeout": context.remaining_seconds(self._timeout_s),
            "metadata": metadata,
            # A half-open probe waits for the connection instead of failing at once while
            # the channel sits in reconnect backoff: otherwise a dependency that is back can
            # fail its probe and stay shunned for another recovery period.
            "wait_for_ready": self.breaker.state is BreakerState.HALF_OPEN,
        }

    async def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        await self._channel.close()
