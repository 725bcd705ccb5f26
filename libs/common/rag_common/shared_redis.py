"""The optional Redis every service may share state through: its client, its breaker, and the
one way to use it best effort (a default while Redis fails, never an error to the caller)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisError

from rag_common.breaker import BreakerPolicy, CircuitBreaker, calling
from rag_common.settings import RedisSettings

log = logging.getLogger(__name__)

T = TypeVar("T")
D = TypeVar("D")


def redis_from_settings(settings: RedisSettings) -> Redis | None:
    """The configured Redis client, or None when no Redis is configured."""
    if not settings.redis_url:
        return None
    return redis_client(settings.redis_url, cluster=settings.redis_cluster)


def redis_client(url: str, *, cluster: bool = False, timeout_s: float = 0.25) -> Redis:
    """A Redis or Redis Cluster client with short timeouts (shared state must not be slow)."""
    options = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}
    if cluster:
        return RedisCluster.from_url(url, **options)
    return Redis.from_url(url, **options)


def redis_breaker() -> CircuitBreaker:
    """The breaker every use of an optional Redis sits behind: open after three failures,
    a probe five seconds later."""
    return CircuitBreaker("redis", BreakerPolicy(consecutive_failures=3, recovery_s=5.0))


async def best_effort(
    breaker: CircuitBreaker, call: Callable[[], Awaitable[T]], default: D, *, meanwhile: str
) -> T | D:
    """`call()`'s result through `breaker`; `default` while the breaker is open or when Redis
    fails (counted, and said once, when the breaker opens, as what happens `meanwhile`)."""
    if not breaker.allow():
        return default
    was = breaker.state
    try:
        with calling(breaker, admitted=True):
            return await call()
    except (RedisError, OSError) as exc:
        if breaker.state is not was:
            log.warning(
                f"redis unavailable; {meanwhile} until it returns",
                extra={"error": type(exc).__name__},
            )
        return default


def tenant_tag(tenant: str) -> str:
    """What a tenant's keys in a shared store carry, so they can be found and erased: its
    name hashed, so keys never show it."""
    return hashlib.sha256(tenant.encode()).hexdigest()[:16]


async def delete_matching(client: Redis | RedisCluster, pattern: str) -> int:
    """Delete every key that matches `pattern` (on every node of a cluster); raises
    RedisError, since an erasure must say when it could not be done."""
    deleted = 0
    batch: list[str] = []
    async for name in client.scan_iter(match=pattern, count=500):
        batch.append(name)
        if len(batch) == 500:
            deleted, batch = deleted + await _unlink(client, batch), []
    return deleted + (await _unlink(client, batch) if batch else 0)


async def _unlink(client: Redis | RedisCluster, names: list[str]) -> int:
    # One key per command: a cluster's keys hash to different slots.
    async with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.unlink(name)
        return sum(await pipe.execute())
