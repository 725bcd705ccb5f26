"""Per-tenant corpus versions: a new one whenever a tenant's documents change.

Every cached answer is keyed by the version it was computed at, so a change in the documents
makes older entries unreachable at once (they then expire by TTL). A replica may serve a
cached answer only under the version it has just read from where every replica reads it.

With Redis, the versions live there and nowhere else: a write first records that it has
begun (the version moves and the tenant is marked as changing), then changes the store,
then moves the version again and clears its mark. A write that cannot record its start is
refused before it changes anything, so no replica, restarted or not, can miss a change
that was acknowledged; while a tenant is marked as changing, no replica caches or serves a
cached answer for it. A mark whose writer died or lost Redis midway expires on its own.

Without Redis (one process, `rag up`), a counter in this process prefixed by a per-start
id, so a restart never revives old entries. A version also carries an epoch shared by all
tenants, which a store restore moves.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator

from redis.asyncio import Redis
from redis.exceptions import RedisError

from rag_common.breaker import CircuitBreaker
from rag_common.errors import Unavailable
from rag_common.reasons import Reason
from rag_common.shared_redis import best_effort, redis_breaker

log = logging.getLogger(__name__)
# Moves every tenant's version at once. Not a valid tenant name, so it cannot collide.
_EPOCH = "*epoch*"
# How long a write's mark outlives it at most, should its end never be recorded: longer
# than the longest write may take (the largest ingest the settings allow, 130 s).
CHANGE_MARK_S = 600.0
_MEANWHILE = "answers are not cached"


class CorpusVersions:
    """Reads tenants' corpus versions and brackets the writes that move them."""

    def __init__(
        self,
        redis: Redis | None = None,
        breaker: CircuitBreaker | None = None,
        *,
        mark_s: float = CHANGE_MARK_S,
    ) -> None:
        self._redis = redis
        # Shared with the answer cache's Redis layer: while Redis is known to be down, asking
        # it for every question would add its timeout to every answer.
        self._breaker = breaker or redis_breaker()
        self._mark_s = mark_s
        self._boot = uuid.uuid4().hex[:8]
        self._local: dict[str, int] = {}
        self._local_epoch = 0

    async def current(self, tenant: str) -> str | None:
        """The tenant's version, or None when no cached answer may be trusted now (Redis
        cannot be read, or the tenant's documents are changing)."""
        if self._redis is None:
            return f"{self._boot}.{self._local_epoch}.{self._local.get(tenant, 0)}"
        found = await best_effort(
            self._breaker, lambda: self._read_seeded(tenant), None, meanwhile=_MEANWHILE
        )
        if found is None or found[2]:  # Redis failing, or a write of the tenant's under way
            return None
        epoch, value, _ = found
        return f"r{int(epoch)}.{int(value)}"

    @contextlib.asynccontextmanager
    async def changing(self, tenant: str) -> AsyncIterator[None]:
        """Bracket a write of the tenant's documents. Raises Unavailable, before the block
        runs, when the start of the change cannot be recorded where every replica reads it."""
        token = await self._begin(tenant)
        try:
            yield
        finally:
            await self._end(tenant, token)

    async def bump_all(self) -> None:
        """Record that every tenant's documents changed at once (a store restored)."""
        self._local_epoch += 1
        if self._redis is not None:
            await self._seed(_EPOCH)
            await self._redis.incr(self._key(_EPOCH))

    async def _begin(self, tenant: str) -> str:
        self._local[tenant] = self._local.get(tenant, 0) + 1
        token = uuid.uuid4().hex
        if self._redis is None:
            return token
        refused = Unavailable(
            "the change cannot be recorded where every replica reads it (Redis); nothing "
            "was changed, try again",
            reason=Reason.CORPUS_VERSION_UNAVAILABLE,
            metadata={"dependency": "redis"},
        )
        # Tried even while the breaker is open: the breaker spares answers Redis's timeout,
        # and a write, rare and refused otherwise, is worth one try.
        now = time.time()
        try:
            await self._seed(tenant)
            pipeline = self._redis.pipeline(transaction=False)
            marks = self._marks(tenant)
            pipeline.zremrangebyscore(marks, "-inf", now)  # marks of writers long gone
            # No TTL on the key itself: Redis set to evict keys with one (volatile-lru) under
            # memory pressure must never evict a mark, nor a version.
            pipeline.zadd(marks, {token: now + self._mark_s})
            pipeline.incr(self._key(tenant))
            await pipeline.execute()
        except (RedisError, OSError) as exc:
            self._breaker.record_failure(Unavailable(f"redis: {type(exc).__name__}"))
            raise refused from None
        return token

    async def _end(self, tenant: str, token: str) -> None:
        self._local[tenant] = self._local.get(tenant, 0) + 1
        if self._redis is None:
            return
        try:
            # The version moves again: answers cached by replicas that read the first
            # move before the store changed are left behind with it.
            pipeline = self._redis.pipeline(transaction=False)
            pipeline.incr(self._key(tenant))
            pipeline.zrem(self._marks(tenant), token)
            await pipeline.execute()
        except (RedisError, OSError):
            # The mark stays and keeps every replica from caching for this tenant until
            # it expires: slower answers for a while, never stale ones.
            log.warning("end of a corpus change not recorded", extra={"tenant": tenant})

    async def _read_seeded(self, tenant: str) -> tuple[bytes, bytes, int]:
        """The tenant's epoch, version and writers, its counters made first if missing."""
        epoch, value, writing = await self._read(tenant)
        if epoch is None or value is None:
            await self._seed(tenant)
            epoch, value, writing = await self._read(tenant)
        return epoch, value, writing

    async def _read(self, tenant: str) -> tuple[bytes | None, bytes | None, int]:
        # One round trip; a pipeline also splits the keys by slot on a cluster.
        pipeline = self._redis.pipeline(transaction=False)
        pipeline.get(self._key(_EPOCH))
        pipeline.get(self._key(tenant))
        pipeline.zcount(self._marks(tenant), time.time(), "+inf")
        epoch, value, writing = await pipeline.execute()
        return epoch, value, writing

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

    @staticmethod
    def _marks(tenant: str) -> str:
        return f"rag:corpus-writing:{tenant}"
