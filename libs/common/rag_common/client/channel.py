"""Client channels to internal services, and the base class of every internal client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rag_common import context, status
from rag_common.breaker import BreakerState, CircuitBreaker, calling
from rag_common.client.endpoints import Endpoint, Endpoints
from rag_common.client.hedging import LOST_RACE, HedgeBudget, LatencyWindow, hedged
from rag_common.errors import DeadlineExceeded, Unavailable
from rag_common.security.credentials import Credentials
from rag_common.security.identity import REQUEST_ID_KEY, Identity
from rag_common.security.tls import TlsFiles
from rag_common.telemetry import tracing

# For a channel over every address a target resolves to (callers of the public port):
# round-robin, and gRPC's own retry of a call that found a replica unavailable (the only
# status that is always safe to retry: the call did not run).
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
_COMMON_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    # gRPC's default reconnect backoff grows to 120 s, so a replica that restarted could
    # stay unused for minutes; cap it so recovery takes about a second.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]


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
        *_COMMON_OPTIONS,
        # A dns:/// target is resolved again when a server closes a connection for its
        # age (see ServiceSettings.max_connection_age_s); at most this often.
        ("grpc.dns_min_time_between_resolutions_ms", 5000),
    ]
    return _channel(channel_target(target), tls, options)


def replica_channel(address: str, authority: str, tls: TlsFiles | None) -> grpc.aio.Channel:
    """A channel to one replica (see endpoints.py): no retry of its own, since a call that
    finds it unavailable goes to another; with TLS, its certificate is checked against
    `authority`, the name the replica was found by, when there is one."""
    options = list(_COMMON_OPTIONS)
    if authority:
        options += [("grpc.default_authority", authority)]
        if tls is not None:
            options += [("grpc.ssl_target_name_override", authority.rsplit(":", 1)[0])]
    return _channel(address, tls, options)


def _channel(target: str, tls: TlsFiles | None, options: list) -> grpc.aio.Channel:
    if tls is None:
        return grpc.aio.insecure_channel(target, options=options)
    return grpc.aio.secure_channel(target, tls.channel_credentials(), options=options)


# A call given less time than this and cut off by it says nothing about the dependency:
# the caller chose a deadline too short (STYLE rule 19). The public budget's floor.
FAIR_TIMEOUT_S = 0.1


# Attempts of one call at most, each on another replica where it found one unavailable.
_ATTEMPTS = 3
TLS_CHECK_S = 5.0  # how often a client looks whether its TLS files changed


class ServiceClient:
    """Calls one internal service: deadline, signed credential and request id on every call.

    A failed call is decoded into the project's own error, so the caller sees the same code
    and reason the remote service raised (or `Unavailable` naming the dependency). Calls go
    through the dependency's circuit breaker: while it is open they fail at once. Each
    attempt goes to one replica (endpoints.py): one found unavailable is left for another,
    a light idempotent call slower than usual is sent to another as well (hedging.py), and
    a replica that keeps failing or hanging is ejected. Each call's credential names the
    method it is for, so a captured one opens nothing else.

    A client of one service names it in three class attributes; the constructor is this one.
    """

    dependency: ClassVar[str]  # the service's short name: breaker, errors, credentials
    service: ClassVar[str]  # its full name, e.g. "rag.v1.RetrievalService"
    stub: ClassVar[type]  # its generated stub class

    def __init__(
        self,
        target: str,
        *,
        timeout_s: float,
        credentials: Credentials,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self._credentials = credentials
        self._timeout_s = timeout_s
        self.replicas = Endpoints(
            target,
            # The files as they are when a channel opens (see _follow_tls_files).
            lambda address, authority: replica_channel(address, authority, credentials.tls),
            name=self.dependency,
        )
        self.breaker = breaker or CircuitBreaker(self.dependency)
        self._latency: dict[str, LatencyWindow] = {}
        self._hedge_budget = HedgeBudget()
        self._tls_seen, self._tls_checked = credentials.tls, time.monotonic()

    def _follow_tls_files(self) -> None:
        """Reopen the channels once the TLS files changed (checked every few seconds): a
        renewed certificate is used without a restart. Credentials are shared by a
        process's clients; each reopens its own channels."""
        now = time.monotonic()
        if self._credentials.tls is None or now - self._tls_checked < TLS_CHECK_S:
            return
        self._tls_checked = now
        self._credentials.tls = self._credentials.tls.reloaded()
        if self._credentials.tls is not self._tls_seen:
            self._tls_seen = self._credentials.tls
            self.replicas.reopen()

    async def _unary(
        self, method: str, request: Any, identity: Identity | None = None, *, hedge: bool = False
    ) -> Any:
        """One call; `hedge` (idempotent, light calls only) sends it again to another
        replica when it is slower than usual (see hedging.py)."""
        self._follow_tls_files()
        path = f"/{self.service}/{method}"
        options = self._call_options(path, identity)
        fair = options["timeout"] >= FAIR_TIMEOUT_S
        latency = self._latency.setdefault(method, LatencyWindow()) if hedge else None
        tried: set[str] = set()

        async def attempt() -> Any:
            for number in range(_ATTEMPTS):
                replica = self.replicas.pick(avoid=tried)
                tried.add(replica.address)
                started = time.monotonic()
                send = getattr(replica.stub(self.stub), method)
                # Each attempt gets what is left of the call's time, no more.
                timeout = context.remaining_seconds(self._timeout_s)
                try:
                    with _outcome(replica, fair):
                        try:
                            with tracing.client_span(path) as traced:
                                metadata = options["metadata"] + traced
                                reply = await send(
                                    request,
                                    **(options | {"timeout": timeout, "metadata": metadata}),
                                )
                        except grpc.aio.AioRpcError as exc:
                            raise status.decode(exc, dependency=self.dependency) from None
                except Unavailable:
                    if number == _ATTEMPTS - 1:
                        raise
                    continue  # it did not run there: another replica
                if latency is not None:
                    latency.add(time.monotonic() - started)
                return reply
            raise AssertionError("unreachable")

        # The service is to blame only when no replica it was not tried on still serves.
        blamed = lambda: not self.replicas.serving_besides(tried)  # noqa: E731
        with calling(self.breaker, timeouts_count=fair, blamed=blamed):
            if latency is None:
                return await attempt()
            return await hedged(attempt, latency.hedge_delay(), self._hedge_budget)

    async def _stream(
        self, method: str, request: Any, identity: Identity | None = None
    ) -> AsyncIterator[Any]:
        """A server stream's messages; a replica that was unavailable before it sent any
        is tried no further, the stream goes to another one (as `_unary` does)."""
        self._follow_tls_files()
        path = f"/{self.service}/{method}"
        options = self._call_options(path, identity)
        fair = options["timeout"] >= FAIR_TIMEOUT_S
        tried: set[str] = set()
        with calling(self.breaker, timeouts_count=fair):
            for number in range(_ATTEMPTS):
                replica = self.replicas.pick(avoid=tried)
                tried.add(replica.address)
                received = False
                messages = self._stream_from(replica, method, path, request, options, fair)
                try:
                    async with contextlib.aclosing(messages):
                        async for message in messages:
                            received = True
                            yield message
                except Unavailable:
                    if received or number == _ATTEMPTS - 1:
                        raise
                    continue  # nothing of it arrived: another replica
                return

    async def _stream_from(
        self,
        replica: Endpoint,
        method: str,
        path: str,
        request: Any,
        options: dict[str, Any],
        fair: bool,
    ) -> AsyncIterator[Any]:
        """One attempt of a server stream, on one replica; its failure decoded."""
        with _outcome(replica, fair):
            try:
                with tracing.client_span(path) as traced:
                    metadata = options["metadata"] + traced
                    timeout = context.remaining_seconds(self._timeout_s)
                    call = getattr(replica.stub(self.stub), method)(
                        request, **(options | {"timeout": timeout, "metadata": metadata})
                    )
                    try:
                        async for message in call:
                            yield message
                    finally:
                        call.cancel()
            except grpc.aio.AioRpcError as exc:
                raise status.decode(exc, dependency=self.dependency) from None

    async def health(self) -> str:
        """The service's standard health status, as its best replica reports it;
        UNREACHABLE when none answers."""
        best = "UNREACHABLE"
        for replica in self.replicas.all:
            try:
                reply = await replica.stub(health_pb2_grpc.HealthStub).Check(
                    health_pb2.HealthCheckRequest(), timeout=1.0
                )
            except grpc.aio.AioRpcError:
                continue
            best = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            if best == "SERVING":
                break
        return best

    def _call_options(self, path: str, identity: Identity | None) -> dict[str, Any]:
        # Before the breaker is asked: a deadline already passed is the caller's, not a
        # failure of the dependency.
        timeout = context.remaining_seconds(self._timeout_s)
        metadata = [(REQUEST_ID_KEY, context.request_id() or context.new_request_id())]
        metadata += self._credentials.metadata(
            self.dependency, identity, method=path, lifetime_s=timeout
        )
        return {
            "timeout": timeout,
            "metadata": metadata,
            # A half-open probe waits for the connection instead of failing at once while
            # the channel sits in reconnect backoff: otherwise a dependency that is back can
            # fail its probe and stay shunned for another recovery period.
            "wait_for_ready": self.breaker.state is BreakerState.HALF_OPEN,
        }

    async def close(self) -> None:
        """Close the channels; calls in flight are cancelled."""
        await self.replicas.close()


@contextlib.contextmanager
def _outcome(replica: Endpoint, fair: bool) -> Iterator[None]:
    """Record one attempt's outcome on its replica's breaker (its ejection). An attempt
    cancelled because another replica answered first lost the race: a failure of this
    replica, the sign of a hang, where a cancellation by the caller says nothing."""
    try:
        # Admitted already: the pick took its place (or every replica was ejected).
        with calling(replica.breaker, timeouts_count=fair, admitted=True):
            yield
    except asyncio.CancelledError as exc:
        if exc.args == (LOST_RACE,):
            replica.breaker.record_failure(
                DeadlineExceeded(f"{replica.address} was slower than another replica")
            )
        raise
