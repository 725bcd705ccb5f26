"""The replicas of one internal service, each with a channel and a breaker of its own.

gRPC's round-robin leaves out a replica that is down (its connection refused), but not
one that hangs: a SIGSTOPped process still accepts connections, so every other call waits
for its deadline. Here each replica (each address the target resolves to) has its own
breaker, as Envoy ejects a host: three failures in a row (timeouts, refused connections,
races lost to another replica) and calls skip it for a few seconds, then one probe decides.
If every replica is ejected, calls go to all of them again (Envoy's panic mode): a service
that failed as a whole must not stay shunned once it is back.

A target is `host:port`, several `ip:port` separated by commas, or `dns:///name:port` (a
headless Kubernetes Service, one address per pod). Names are resolved again every few
seconds, so replicas that come and go are followed; a name that does not resolve yet (its
service started after this one) is tried again at the next call, so it is found the moment
it appears instead of after gRPC's own resolver backs off.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from rag_common.breaker import BreakerPolicy, BreakerState, CircuitBreaker

log = logging.getLogger(__name__)

RESOLVE_EVERY_S = 5.0
# While a name does not resolve, at most this often: every call, short of a DNS flood.
RESOLVE_UNRESOLVED_EVERY_S = 0.25
# Ejection: three failures in a row, or half of the last ten; out for 3 s, then a probe.
EJECTION = BreakerPolicy(
    window=10, min_calls=4, failure_rate=0.5, consecutive_failures=3, recovery_s=3.0
)


@dataclass
class Endpoint:
    """One replica: its address, its channel and its breaker."""

    address: str
    channel: grpc.aio.Channel
    breaker: CircuitBreaker
    _stubs: dict[type, Any] = field(default_factory=dict)

    def stub(self, kind: type) -> Any:
        """The generated stub of `kind` over this replica's channel."""
        if kind not in self._stubs:
            self._stubs[kind] = kind(self.channel)
        return self._stubs[kind]

    def replace_channel(self, channel: grpc.aio.Channel) -> grpc.aio.Channel:
        """Use `channel` from now on; returns the one it replaces."""
        old, self.channel = self.channel, channel
        self._stubs.clear()
        return old


@dataclass(frozen=True)
class Target:
    """What a target names: fixed addresses, or a name to resolve (and its port)."""

    addresses: tuple[str, ...] = ()
    host: str = ""
    port: int = 0

    @classmethod
    def parse(cls, target: str) -> Target:
        """`host:port`, `a:port,b:port`, `ipv4:a:port,b:port` or `dns:///name:port`."""
        bare = target.removeprefix("dns:///").removeprefix("ipv4:")
        parts = [p.strip().replace("localhost:", "127.0.0.1:") for p in bare.split(",")]
        if len(parts) > 1 or _is_ip(parts[0].rsplit(":", 1)[0]):
            return cls(addresses=tuple(parts))
        host, _, port = parts[0].rpartition(":")
        return cls(host=host, port=int(port))


class Endpoints:
    """Picks a replica for each attempt of a call, round-robin over those not ejected."""

    def __init__(
        self,
        target: str,
        open_channel: Callable[[str, str], grpc.aio.Channel],
        *,
        name: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._target = Target.parse(target)
        # (address, authority) -> channel: the authority is the name TLS checks.
        self._open_channel = open_channel
        self._name = name
        self._clock = clock
        self._by_address: dict[str, Endpoint] = {}
        self._turn = 0
        self._resolved_at = -float("inf")
        self._unresolved = False
        self._resolving: asyncio.Task | None = None
        self._closing: set[asyncio.Task] = set()
        addresses = self._target.addresses or self._resolve_now()
        self._update(addresses)

    @property
    def all(self) -> list[Endpoint]:
        """Every replica known now."""
        return list(self._by_address.values())

    def pick(self, avoid: set[str] = frozenset()) -> Endpoint:
        """A replica for one attempt, not one in `avoid` where another can answer; takes a
        half-open replica's probe slot when it picks it."""
        self._resolve_soon()
        endpoints = self.all
        count = len(endpoints)
        for offset in range(count):
            endpoint = endpoints[(self._turn + offset) % count]
            if endpoint.address in avoid or endpoint.breaker.peek() is BreakerState.OPEN:
                continue
            if endpoint.breaker.allow():
                self._turn = (self._turn + offset + 1) % count
                return endpoint
        # Every replica ejected or tried: all of them again, the untried first.
        fresh = [e for e in endpoints if e.address not in avoid] or endpoints
        self._turn = (self._turn + 1) % count
        return fresh[self._turn % len(fresh)]

    def serving_besides(self, tried: set[str]) -> bool:
        """Whether a replica other than those in `tried` is not ejected."""
        return any(
            e.address not in tried and e.breaker.peek() is not BreakerState.OPEN for e in self.all
        )

    def reopen(self) -> None:
        """A new channel to every replica (its TLS files changed); calls in flight on the
        old ones may finish. Ejections are kept."""
        authority = self._authority()
        for endpoint in self.all:
            old, endpoint.channel = (
                endpoint.channel,
                self._open_channel(endpoint.address, authority),
            )
            endpoint._stubs.clear()
            self._close_later(old)

    async def close(self) -> None:
        """Close every channel; calls in flight are cancelled."""
        if self._resolving is not None:
            self._resolving.cancel()
        for endpoint in self.all:
            await endpoint.channel.close()

    def _update(self, addresses: list[str] | tuple[str, ...]) -> None:
        if not addresses:
            return  # resolution failed or found nothing: keep what we have
        authority = self._authority()
        for address in addresses:
            if address not in self._by_address:
                channel = self._open_channel(address, authority)
                breaker = CircuitBreaker(f"{self._name}@{address}", EJECTION, clock=self._clock)
                self._by_address[address] = Endpoint(address, channel, breaker)
        for address in set(self._by_address) - set(addresses):
            # Calls in flight on a replica that left may finish; it gets no new ones.
            self._close_later(self._by_address.pop(address).channel)

    def _authority(self) -> str:
        return f"{self._target.host}:{self._target.port}" if self._target.host else ""

    def _close_later(self, channel: grpc.aio.Channel) -> None:
        closing = asyncio.ensure_future(channel.close(grace=30.0))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    def _resolve_soon(self) -> None:
        every = RESOLVE_UNRESOLVED_EVERY_S if self._unresolved else RESOLVE_EVERY_S
        if not self._target.host or self._clock() - self._resolved_at < every:
            return
        if self._resolving is None or self._resolving.done():
            self._resolved_at = self._clock()
            self._resolving = asyncio.ensure_future(self._resolve())

    async def _resolve(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(
                self._target.host, self._target.port, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            if not self._unresolved:  # once, not at every call while it stays unresolved
                log.warning(
                    "could not resolve", extra={"target": self._target.host, "error": str(exc)}
                )
            return
        self._unresolved = False
        self._update(_addresses(infos))

    def _resolve_now(self) -> list[str]:
        self._resolved_at = self._clock()
        try:
            infos = socket.getaddrinfo(
                self._target.host, self._target.port, type=socket.SOCK_STREAM
            )
        except OSError:
            # Not resolvable yet (a Service with no pod ready, a container not started):
            # gRPC's own resolver meanwhile, and ours again at the next call.
            self._unresolved = True
            return [f"dns:///{self._target.host}:{self._target.port}"]
        return _addresses(infos)


def _addresses(infos: list) -> list[str]:
    """ip:port of each resolved address, IPv4 first and only if there is any."""
    v4 = [f"{info[4][0]}:{info[4][1]}" for info in infos if info[0] == socket.AF_INET]
    v6 = [f"[{info[4][0]}]:{info[4][1]}" for info in infos if info[0] == socket.AF_INET6]
    return list(dict.fromkeys(v4 or v6))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
