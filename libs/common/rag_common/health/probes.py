"""Probes of the dependencies most services share: another internal service, Redis."""

from __future__ import annotations

from rag_common.cache.tiered import RedisLayer
from rag_common.client.channel import ServiceClient
from rag_common.health.details import Probe
from rag_common.health.verdict import Health


def client_probe(client: ServiceClient) -> Probe:
    """A probe that asks an internal service's standard health check."""

    async def check() -> tuple[Health, str]:
        status = await client.health()
        return (Health.HEALTHY, status) if status == "SERVING" else (Health.UNHEALTHY, status)

    return check


def redis_probe(layer: RedisLayer) -> Probe:
    """A probe for an optional Redis: unreachable means degraded, not unhealthy."""

    async def check() -> tuple[Health, str]:
        ok = await layer.ping()
        return (Health.HEALTHY, "ok") if ok else (Health.DEGRADED, "unreachable")

    return check
