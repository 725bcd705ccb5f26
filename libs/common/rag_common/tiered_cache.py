"""A two-layer cache: an in-process TTL LRU over Redis (single server or Redis Cluster).

Read-through: a key missing locally is looked up in Redis, and a Redis hit fills the local
layer. Many keys are read or written in one round trip. Values are bytes, so callers store
compact binary forms (an embedding is its float32 bytes). Redis failing never fails a call:
the Redis layer sits behind a circuit breaker, misses are reported instead of errors, the
local layer carries on, and Redis is used again once a probe after the recovery time works.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisError

from rag_common.breaker import BreakerPolicy, CircuitBreaker
from rag_common.cache import LocalTTLCache
from rag_common.errors import Unavailable
from rag_common.settings import RedisSettings

log = logging.getLogger(__name__)


def redis_from_settings(settings: RedisSettings) -> Redis | None:
    """The configured Redis client, or None when no Redis is configured."""
    if not settings.redis_url:
        return None
    return redis_client(settings.redis_url, cluster=settings.redis_cluster)


def redis_client(url: str, *, cluster: bool = False, timeout_s: float = 0.25) -> Redis:
    """A Redis or Redis Cluster client with short timeouts (a cache must not be slow)."""
    options = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}
    if cluster:
        return RedisCluster.from_url(url, **options)
    return Redis.from_url(url, **options)


def redis_breaker() -> CircuitBreaker:
    """The breaker every use of an optional Redis sits behind: open after three failures,
    a probe five seconds later."""
    return CircuitBreaker("redis", BreakerPolicy(consecutive_failures=3, recovery_s=5.0))


def redis_failed(breaker: CircuitBreaker, exc: Exception, fallback: str) -> None:
    """Count a Redis failure; say once, when the breaker opens, what happens meanwhile."""
    was = breaker.state
    breaker.record_failure(Unavailable(f"redis: {type(exc).__name__}"))
    if breaker.state is not was:
        log.warning(
            f"redis unavailable; {fallback} until it returns", extra={"error": type(exc).__name__}
        )


class RedisLayer:
    """One namespace of keys in Redis, with a TTL, behind a breaker."""

    def __init__(
        self,
        client: Redis | RedisCluster,
        namespace: str,
        *,
        ttl_s: float,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self._client = client
        self._prefix = f"rag:{namespace}:"
        self._ttl_ms = int(ttl_s * 1000)
        self.breaker = breaker or redis_breaker()

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Values in order, None for misses; all misses while Redis is failing."""
        if not keys or not self.breaker.allow():
            return [None] * len(keys)
        names = [self._prefix + k for k in keys]
        try:
            if isinstance(self._client, RedisCluster):
                # Keys hash to different slots; the client splits and regroups the MGET.
                values = await self._client.mget_nonatomic(names)
            else:
                values = await self._client.mget(names)
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return [None] * len(keys)
        self.breaker.record_success()
        return list(values)

    async def set_many(self, items: Mapping[str, bytes]) -> None:
        """Store values with the layer's TTL, in one pipelined round trip; best effort."""
        if not items or not self.breaker.allow():
            return
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for key, value in items.items():
                    pipe.set(self._prefix + key, value, px=self._ttl_ms)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return
        self.breaker.record_success()

    async def ping(self) -> bool:
        """Whether Redis answers now."""
        try:
            return bool(await self._client.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    def _failed(self, exc: Exception) -> None:
        redis_failed(self.breaker, exc, "caching in-process only")


class TieredCache:
    """The local layer over an optional Redis layer; counts hits and misses per layer."""

    def __init__(self, local: LocalTTLCache[bytes], remote: RedisLayer | None = None) -> None:
        self._local = local
        self.remote = remote
        self.counts: Counter[str] = Counter()  # local_hit, remote_hit, miss

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Values in order, None for misses."""
        values = [self._local.get(k) for k in keys]
        missing = [i for i, v in enumerate(values) if v is None]
        self.counts["local_hit"] += len(keys) - len(missing)
        if missing and self.remote is not None:
            found = await self.remote.get_many([keys[i] for i in missing])
            for i, value in zip(missing, found, strict=True):
                if value is not None:
                    values[i] = value
                    self._local.put(keys[i], value)  # fill the upper layer
                    self.counts["remote_hit"] += 1
        self.counts["miss"] += sum(v is None for v in values)
        return values

    async def set_many(self, items: Mapping[str, bytes]) -> None:
        """Store in every layer."""
        for key, value in items.items():
            self._local.put(key, value)
        if self.remote is not None:
            await self.remote.set_many(items)
