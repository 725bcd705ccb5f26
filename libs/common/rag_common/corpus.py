"""Per-tenant corpus versions: a new one whenever a tenant's documents change.

Every cached answer is keyed by the version it was computed at, so a change in the documents
makes older entries unreachable at once (they then expire by TTL). With Redis the version is
a shared counter, so every replica sees a change made through any of them; without it, a
counter in this process prefixed by a per-start id, so a restart never revives old entries.
A version also carries an epoch shared by all tenants, which a store restore moves.
"""

from __future__ import annotations

import logging
import secrets
import uuid

from redis.asyncio import Redis
from redis.exceptions import RedisError

from rag_common.breaker import CircuitBreaker
from rag_common.errors import Unavailable

log = logging.getLogger(__name__)
# Moves every tenant's version at once. Not a valid tenant name, so it cannot collide.
_EPOCH = "*epoch*"


class CorpusVersions:
    """Reads and moves tenants' corpus versions."""

    def __init__(self, redis: Redis | None = None, breaker: CircuitBreaker | None = None) -> None:
        self._redis = redis
        # Shared with the answer cache's Redis layer: while Redis is known to be down, asking
        # it for every question would add its timeout to every answer.
        self._breaker = breaker or CircuitBreaker("redis")
        self._boot = uuid.uuid4().hex[:8]
        self._local: dict[str, int] = {}
        self._local_epoch = 0
        # Tenants whose change could not be recorded in Redis yet: no cached answer for them
        # until it is, or an answer from before the change could be served.
        self._unrecorded: set[str] = set()

    async def current(self, tenant: str) -> str | None:
        """The tenant's version, or None when it cannot be known (then nothing is cached)."""
        if self._redis is None:
            return f"{self._boot}.{self._local_epoch}.{self._local.get(tenant, 0)}"
        if not self._breaker.allow():
            return None
        try:
            if tenant in self._unrecorded:
                await self._incr(tenant)
                self._unrecorded.discard(tenant)
            epoch, value = await self._read(tenant)
            if epoch is None or value is None:
                await self._seed(tenant)
                epoch, value = await self._read(tenant)
        except (RedisError, OSError) as exc:
            self._breaker.record_failure(Unavailable(f"redis: {type(exc).__name__}"))
            return None
        self._breaker.record_success()
        return f"r{int(epoch)}.{int(value)}"

    async def bump_all(self) -> None:
        """Record that every tenant's documents changed at once (a store restored)."""
        self._local_epoch += 1
        if self._redis is not None:
            await self._seed(_EPOCH)
            await self._redis.incr(self._key(_EPOCH))

    async def _read(self, tenant: str) -> tuple[bytes | None, bytes | None]:
        # One round trip; a pipeline also splits the two keys by slot on a cluster.
        pipeline = self._redis.pipeline(transaction=False)
        pipeline.get(self._key(_EPOCH))
        pipeline.get(self._key(tenant))
        epoch, value = await pipeline.execute()
        return epoch, value

    async def bump(self, tenant: str) -> None:
        """Record that the tenant's documents changed."""
        self._local[tenant] = self._local.get(tenant, 0) + 1
        if self._redis is None:
            return
        try:
            await self._incr(tenant)
        except (RedisError, OSError):
            log.warning("corpus change not recorded in redis yet", extra={"tenant": tenant})
            self._unrecorded.add(tenant)

    async def _incr(self, tenant: str) -> None:
        await self._seed(tenant)
        await self._redis.incr(self._key(tenant))

    async def _seed(self, tenant: str) -> None:
        # Counters that start at a random value: if Redis loses its data and they start
        # over, they cannot walk back into versions that replicas still hold locally.
        pipeline = self._redis.pipeline(transaction=False)
        for name in {tenant, _EPOCH}:
            pipeline.set(self._key(name), secrets.randbelow(2**48), nx=True)
        await pipeline.execute()

    @staticmethod
    def _key(tenant: str) -> str:
        return f"rag:corpus:{tenant}"
