"""One server bootstrap for every service: interceptor, health, reflection, graceful stop."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from google.protobuf import descriptor, descriptor_pb2, descriptor_pool
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from pydantic import ValidationError

from rag.v1 import health_details_service_pb2, health_details_service_pb2_grpc
from rag_common.health.details import Dependency, HealthChecker
from rag_common.health.servicer import CheckOnlyHealth, HealthDetailsServicer
from rag_common.health.signals import SignalWindow
from rag_common.security.audit import AuditLog
from rag_common.security.tls import TlsFiles
from rag_common.server.fair_use import FairUse
from rag_common.server.interceptor import IdentityResolver, ServerInterceptor
from rag_common.server.keyless import KeylessShare
from rag_common.server.stall_guard import StallGuard
from rag_common.settings import ServiceSettings, env_name
from rag_common.telemetry import logs, tracing
from rag_common.telemetry.metrics import RpcMetrics

log = logging.getLogger(__name__)
S = TypeVar("S", bound=ServiceSettings)

_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
LIVENESS_SERVICE = "liveness"  # the health service name a liveness probe asks for


@dataclass(frozen=True)
class Servicer:
    """A servicer, the generated function that registers it, and its full service name."""

    implementation: Any
    add_to_server: Callable[[Any, grpc.aio.Server], None]
    service_name: str
    # Method name -> the role its caller must act for (internal services; see credentials).
    required_roles: Mapping[str, str] = field(default_factory=dict)


def required_roles(servicers: Sequence[Servicer]) -> dict[str, str]:
    """The role each method of `servicers` needs, by its full path."""
    return {
        f"/{s.service_name}/{method}": role
        for s in servicers
        for method, role in s.required_roles.items()
    }


class ServiceHost:
    """Runs a set of servicers in one grpc.aio server with health, health details, metrics,
    traces and reflection.

    Health starts as NOT_SERVING and turns SERVING only when `mark_serving()` is called after
    warm-up, so load balancers and `rag up` never send work to a service that cannot do it.
    Health details report `dependencies` and the operating signals (latency, errors,
    `cache_lookups`' hit rate, CPU, memory) against the settings' thresholds; a reason from
    `unavailable` (maintenance) makes the service unhealthy.
    """

    def __init__(
        self,
        settings: ServiceSettings,
        servicers: Sequence[Servicer],
        *,
        resolve_identity: IdentityResolver,
        name: str = "rag",
        dependencies: Sequence[Dependency] = (),
        unavailable: Callable[[], str | None] = lambda: None,
        cache_lookups: Callable[[], tuple[int, int]] | None = None,
        untimed: tuple[str, ...] = (),
        fair_use: FairUse | None = None,
        audited: tuple[str, ...] = (),
    ) -> None:
        self._settings = settings
        self._health = CheckOnlyHealth()
        self.metrics = RpcMetrics(name)
        self.signals = SignalWindow(settings.thresholds(), cache=cache_lookups)
        self.checker = HealthChecker(
            name, dependencies, signals=self.signals.signals, unavailable=unavailable
        )
        self.metrics.watch_breakers(self.checker.breakers)
        self.metrics.watch_signals(self.signals)
        self._servicers = [*servicers, _health_details(self.checker)]
        interceptor = ServerInterceptor(
            resolve_identity,
            self.metrics,
            self.signals,
            KeylessShare(settings.max_concurrent_rpcs),
            untimed=untimed,
            fair_use=fair_use,
            # Writes, deletes and admin calls (`audited`), and every denied call.
            audit=AuditLog(audited),
        )
        self._server = grpc.aio.server(
            # The stall guard drives every stream, so it comes first.
            interceptors=[StallGuard(settings.stream_write_timeout_s, self.metrics), interceptor],
            maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
            options=[
                ("grpc.max_receive_message_length", settings.max_message_bytes),
                ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
                ("grpc.keepalive_permit_without_calls", 1),
                # A refused call's request is never read, but gRPC takes in what the window
                # allows; probing bandwidth grows that window to megabytes a stream, and 48
                # keyless calls of 15-60 MB then left 170-400 MB behind. 64 KB windows leave
                # ~2 MB, and cost a large ingest a window update every 64 KB.
                ("grpc.http2.bdp_probe", 0),
                ("grpc.http2.min_ping_interval_without_data_ms", 5000),
                *_connection_age_options(settings),
            ],
        )
        self.port = 0
        self._probes: grpc.aio.Server | None = None
        self._companions: list[
            tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]
        ] = []

    def add_companion(
        self, start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]]
    ) -> None:
        """Something that runs beside the server (a follower of shared state): started
        with it, before it serves, and stopped after it."""
        self._companions.append((start, stop))

    @property
    def shutdown_delay_s(self) -> float:
        """How long the port keeps taking calls after SIGTERM, before the grace period."""
        return self._settings.shutdown_delay_s

    @property
    def grace_period_s(self) -> float:
        """How long calls in flight may take to finish once stopping."""
        return self._settings.grace_period_s

    @property
    def service_names(self) -> list[str]:
        """Full names of the rag.v1 services this host serves."""
        return [s.service_name for s in self._servicers]

    async def start(self) -> int:
        """Bind, start serving RPCs with health NOT_SERVING, and return the bound port."""
        for servicer in self._servicers:
            servicer.add_to_server(servicer.implementation, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        names = [*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME]
        reflection.enable_server_reflection(names, self._server, pool=_own_files(names))
        address = f"{self._settings.host}:{self._settings.port}"
        tls = TlsFiles.from_settings(self._settings)
        if tls is None:
            self.port = self._server.add_insecure_port(address)
        else:
            credentials = tls.server_credentials(
                require_client_certs=self._settings.require_client_certs
            )
            self.port = self._server.add_secure_port(address, credentials)
        if self.port == 0:
            raise RuntimeError(f"could not bind {address}")
        await self._server.start()
        if self._settings.probe_port:
            await self._start_probes(self._settings.probe_port)
        for start, _ in self._companions:
            await start()
        if self._settings.metrics_port:
            self.metrics.serve(self._settings.host, self._settings.metrics_port)
        await self._set_all(health_pb2.HealthCheckResponse.NOT_SERVING)
        # Liveness: SERVING for as long as the process answers at all, whatever its
        # readiness (warm-up, maintenance, a dependency down), so a probe on it never
        # restarts a pod that is merely not ready.
        await self._health.set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        return self.port

    async def _start_probes(self, port: int) -> None:
        # Kubernetes' gRPC probes speak no TLS: health alone, on a port of its own, from the
        # same HealthServicer, so it reports exactly what the main port would.
        self._probes = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._probes)
        if self._probes.add_insecure_port(f"{self._settings.host}:{port}") == 0:
            raise RuntimeError(f"could not bind the probe port {port}")
        await self._probes.start()

    async def mark_serving(self) -> None:
        """Report SERVING for the whole server and each of its services."""
        await self._set_all(health_pb2.HealthCheckResponse.SERVING)

    async def mark_not_serving(self) -> None:
        """Report NOT_SERVING, for example while a dependency it cannot work without is down."""
        await self._set_all(health_pb2.HealthCheckResponse.NOT_SERVING)

    async def announce_shutdown(self) -> None:
        """NOT_SERVING, while calls are still taken: balancers move away first."""
        await self._health.enter_graceful_shutdown()

    async def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING first so balancers move away, then let calls in flight finish."""
        await self._health.enter_graceful_shutdown()
        # stop(grace) refuses new calls at once and cancels those still running after `grace`.
        await self._server.stop(self.grace_period_s if grace is None else grace)
        if self._probes is not None:
            await self._probes.stop(0)
        for _, stop in reversed(self._companions):
            await stop()

    async def _set_all(self, status: int) -> None:
        for name in ["", *self.service_names]:
            await self._health.set(name, status)


def _own_files(service_names: list[str]) -> descriptor_pool.DescriptorPool:
    """The proto files of these services and what they import, and nothing else.

    Reflection reads from the default pool otherwise, which holds every generated module the
    process imported: the public port would describe the internal services it calls.
    """
    default, pool, added = descriptor_pool.Default(), descriptor_pool.DescriptorPool(), set()

    def add(file: descriptor.FileDescriptor) -> None:
        if file.name in added:
            return
        added.add(file.name)
        for dependency in file.dependencies:
            add(dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        pool.Add(proto)

    for name in service_names:
        add(default.FindServiceByName(name).file)
    return pool


def _health_details(checker: HealthChecker) -> Servicer:
    return Servicer(
        HealthDetailsServicer(checker),
        health_details_service_pb2_grpc.add_HealthDetailsServiceServicer_to_server,
        health_details_service_pb2.DESCRIPTOR.services_by_name["HealthDetailsService"].full_name,
    )


def _connection_age_options(settings: ServiceSettings) -> list[tuple[str, int]]:
    # HTTP/2 connections live for hours, and a client balances only over the connections
    # it has: without an age limit, replicas added by scale-out would get no traffic from
    # callers that were already connected.
    if settings.max_connection_age_s <= 0:
        return []
    return [
        ("grpc.max_connection_age_ms", int(settings.max_connection_age_s * 1000)),
        ("grpc.max_connection_age_grace_ms", int(settings.max_connection_age_grace_s * 1000)),
    ]


async def run_service(
    name: str,
    host: ServiceHost,
    *,
    load: Callable[[], Awaitable[None]] | None = None,
    warm_up: Callable[[], Awaitable[None]] | None = None,
    draining: Callable[[float], None] | None = None,
    close: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Load, start `host`, warm up, serve until SIGTERM or SIGINT, then shut down gracefully.

    `load` runs before the port opens: what takes seconds of CPU, like a model. Callers are
    refused by the kernel meanwhile, at no cost to the load, where an open port would have
    the process accept and reject their calls while it loads, which under traffic more than
    doubles the time to SERVING. `warm_up` runs with the port open and health NOT_SERVING.
    `draining` is told the grace period as the shutdown begins, so calls in flight can
    finish within it (see `rag_query.drain`).
    """
    started = time.perf_counter()
    if load is not None:
        await load()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    port = await host.start()
    log.info(f"{name} listening", extra={"port": port})
    try:
        if warm_up is not None:
            await warm_up()
        await host.mark_serving()
        cold_start_ms = round((time.perf_counter() - started) * 1000)
        log.info("serving", extra={"port": port, "cold_start_ms": cold_start_ms})
        await stop.wait()
        log.info("stopping", extra={"grace_s": host.grace_period_s})
        # A call sent just before the signal may not have reached a handler yet; stopping
        # the server now would cancel it with a bare CANCELLED. Keep taking calls a moment.
        await host.announce_shutdown()
        await asyncio.sleep(host.shutdown_delay_s)
        if draining is not None:
            draining(host.grace_period_s)
    finally:
        await host.stop()
        if close is not None:
            await close()
        log.info("stopped")


def service_main(name: str, settings_type: type[S], serve: Callable[[S], Awaitable[None]]) -> None:
    """Read settings, configure logs and serve until SIGTERM: every service's `main()`.

    Bad settings end the process with status 2 and one line per bad variable, naming the
    variable and the problem but never the value given (it may be a secret).
    """
    try:
        settings = settings_type()
    except ValidationError as exc:
        sys.stderr.write(settings_errors(settings_type, exc))
        raise SystemExit(2) from None
    logs.configure(name, settings.log_level)
    tracing.install(
        tracing.tracer_provider(
            settings.traces_exporter,
            settings.trace_service_name or f"rag-{name}",
            endpoint=settings.otlp_endpoint,
            sampler=settings.traces_sampler,
            sampler_ratio=settings.traces_sampler_arg,
        )
    )
    try:
        asyncio.run(serve(settings))
    finally:
        tracing.shutdown()  # spans still buffered are sent before the process ends


def settings_errors(settings_type: type[ServiceSettings], exc: ValidationError) -> str:
    """What is wrong with the environment, by variable name, without the values."""
    by_alias = {env_name(settings_type, name): name for name in settings_type.model_fields}
    lines = [f"invalid settings for {settings_type.__name__}:"]
    for error in exc.errors(include_input=False, include_url=False):
        field, *path = error["loc"] or ("",)
        field = by_alias.get(str(field), str(field))  # pydantic names an aliased one by alias
        info = settings_type.model_fields.get(field)
        # The path inside a map names its keys, and the keys of a secret map (API keys)
        # are the secrets themselves: show it only for fields that may be shown at all.
        detail = ".".join(map(str, path)) if info is not None and info.repr else ""
        variable = env_name(settings_type, field)
        lines.append(f"  {variable}{f' ({detail})' if detail else ''}: {error['msg']}")
    return "\n".join(lines) + "\n"
