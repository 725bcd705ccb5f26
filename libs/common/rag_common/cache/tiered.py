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

from rag_common.breaker import CircuitBreaker
from rag_common.cache.local import LocalTTLCache
from rag_common.shared_redis import best_effort, delete_matching, redis_breaker

log = logging.getLogger(__name__)
_MEANWHILE = "caching in-process only"


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
        if not keys:
            return []
        names = [self._prefix + k for k in keys]
        if isinstance(self._client, RedisCluster):
            # Keys hash to different slots; the client splits and regroups the MGET.
            read = self._client.mget_nonatomic
        else:
            read = self._client.mget
        values = await best_effort(self.breaker, lambda: read(names), None, meanwhile=_MEANWHILE)
        return [None] * len(keys) if values is None else list(values)

    async def set_many(self, items: Mapping[str, bytes]) -> None:
        """Store values with the layer's TTL, in one pipelined round trip; best effort."""
        if items:
            await best_effort(self.breaker, lambda: self._set(items), None, meanwhile=_MEANWHILE)

    async def _set(self, items: Mapping[str, bytes]) -> None:
        async with self._client.pipeline(transaction=False) as pipe:
            for key, value in items.items():
                pipe.set(self._prefix + key, value, px=self._ttl_ms)
            await pipe.execute()

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every key of the layer that starts with `prefix`; raises RedisError (not
        best effort: an erasure must say when it could not be done)."""
        return await delete_matching(self._client, f"{self._prefix}{prefix}*")

    async def ping(self) -> bool:
        """Whether Redis answers now."""
        try:
            return bool(await self._client.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


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

    async def forget(self, prefix: str) -> int:
        """Delete every entry whose key starts with `prefix`, in every layer."""
        forgotten = self._local.forget(lambda key: str(key).startswith(prefix))
        if self.remote is not None:
            forgotten += await self.remote.delete_prefix(prefix)
        return forgotten

    async def set_many(self, items: Mapping[str, bytes]) -> None:
        """Store in every layer."""
        for key, value in items.items():
            self._local.put(key, value)
        if self.remote is not None:
            await self.remote.set_many(items)
