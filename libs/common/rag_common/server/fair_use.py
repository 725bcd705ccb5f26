"""Fair use on the public port: rate limits per tenant and principal, and caps on the calls
one tenant or one connection may hold at once.

Rate limits are token buckets: `rate` calls a second on average, bursts of up to `burst`.
With Redis they are shared by every replica (one script call per request, atomic, on
Redis's clock); without it, or while Redis fails, each replica keeps its own. A refused
call gets RESOURCE_EXHAUSTED with a `google.rpc.RetryInfo` saying when a token is back.
Concurrency caps are per replica: a tenant holding more calls than its share, or one
connection opening streams it never reads, is refused before any work starts. So, while the
replica is busy, is a tenant making more than its even share of the calls (busy_shedding.py).
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio import Redis, RedisCluster

from rag_common.breaker import CircuitBreaker
from rag_common.errors import ResourceExhausted
from rag_common.reasons import Reason
from rag_common.security.identity import Identity
from rag_common.server.busy_shedding import BusyShedding
from rag_common.shared_redis import best_effort, redis_breaker


@dataclass(frozen=True)
class FairUsePolicy:
    """Limits per tenant, per principal and per connection; 0 turns a limit off."""

    tenant_rate: float = 0.0  # calls per second, sustained
    tenant_burst: int = 400
    principal_rate: float = 0.0
    principal_burst: int = 200
    tenant_concurrency: int = 32  # calls one tenant may have running at once, per replica
    connection_streams: int = 32  # streaming calls one connection may hold open


class LocalBuckets:
    """Token buckets in this process, at most `max_keys` of them (least recently used go)."""

    def __init__(self, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic):
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._max_keys = max_keys
        self._clock = clock

    def take(self, key: str, rate: float, burst: int) -> float:
        """Take a token: 0.0 if there was one, else the seconds until there is."""
        now = self._clock()
        tokens, last = self._buckets.pop(key, (float(burst), now))
        tokens = min(float(burst), tokens + (now - last) * rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / rate
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return wait

    def take_all(self, buckets: list[tuple[str, float, int]]) -> float:
        """A token from each of (key, rate, burst), or none: 0.0, or the seconds to wait."""
        waits = [self.take(key, rate, burst) for key, rate, burst in buckets]
        wait = max(waits)
        if wait > 0:  # a refused call keeps no token: give back what it took
            for (key, _, burst), taken in zip(buckets, waits, strict=True):
                if taken == 0:
                    tokens, last = self._buckets[key]
                    self._buckets[key] = (min(float(burst), tokens + 1.0), last)
        return wait


# Every bucket are checked and a token is taken from each only if both have one, atomically,
# on Redis's clock (replicas' clocks never disagree about it). Returns the wait in seconds.
_TAKE_ALL = """
local now = redis.call('TIME')
now = tonumber(now[1]) + tonumber(now[2]) / 1e6
local waits, states = {}, {}
for i = 1, #KEYS do
  local rate, burst = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local state = redis.call('HMGET', KEYS[i], 't', 'ts')
  local tokens = tonumber(state[1]) or burst
  local ts = tonumber(state[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
  states[i] = tokens
  waits[i] = tokens >= 1 and 0 or (1 - tokens) / rate
end
local wait = math.max(unpack(waits))
for i = 1, #KEYS do
  local rate, burst = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local tokens = states[i]
  if wait == 0 then tokens = tokens - 1 end
  redis.call('HSET', KEYS[i], 't', tokens, 'ts', now)
  redis.call('PEXPIRE', KEYS[i], math.ceil(burst / rate * 1000) + 1000)
end
return tostring(wait)
"""


class SharedBuckets:
    """Token buckets in Redis for every replica, with LocalBuckets while Redis fails."""

    def __init__(
        self,
        client: Redis | RedisCluster,
        local: LocalBuckets | None = None,
        *,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self._client = client
        self._script = client.register_script(_TAKE_ALL)
        self._local = local or LocalBuckets()
        # The caches' breaker when given: one verdict per Redis, whoever finds it down.
        self.breaker = breaker or redis_breaker()

    async def take(self, buckets: list[tuple[str, float, int]]) -> float:
        """Take a token from each of (key, rate, burst), or none: the seconds to wait."""
        args = [value for _, rate, burst in buckets for value in (rate, burst)]
        wait = await best_effort(
            self.breaker,
            lambda: self._script(keys=[k for k, _, _ in buckets], args=args),
            None,
            meanwhile="rate limits per replica",
        )
        return self._local.take_all(buckets) if wait is None else float(wait)


class FairUse:
    """Admits a call or refuses it with RESOURCE_EXHAUSTED, and counts it while it runs."""

    def __init__(
        self,
        policy: FairUsePolicy,
        shared: SharedBuckets | None = None,
        *,
        shedding: BusyShedding | None = None,
    ) -> None:
        self._policy = policy
        self._shared = shared
        self._shedding = shedding
        self._local = LocalBuckets()
        self._by_tenant: Counter[str] = Counter()
        self._streams_by_peer: Counter[str] = Counter()
        self._call_seconds = _TypicalDurations()

    async def admit(
        self, identity: Identity | None, peer: str, *, streaming: bool
    ) -> Callable[[], None]:
        """Take a slot of the caller's tenant (and connection, for a stream), or raise
        ResourceExhausted; returns what frees the slot, to call once the call is over."""
        if identity is None:  # no caller identity (health, reflection): never limited
            return _nothing
        policy = self._policy
        tenant = identity.tenant
        if self._shedding is not None:
            self._shedding.check(tenant)
        if policy.tenant_concurrency and self._by_tenant[tenant] >= policy.tenant_concurrency:
            raise ResourceExhausted(
                f"tenant '{tenant}' has {policy.tenant_concurrency} calls running; retry "
                "when one ends",
                reason=Reason.TENANT_CONCURRENCY,
                # About when one of its calls ends: a client that waits this long instead
                # of a fixed short delay costs the service one refusal, not dozens.
                retry_after_s=self._call_seconds.typical(tenant),
            )
        if (
            streaming
            and policy.connection_streams
            and self._streams_by_peer[peer] >= policy.connection_streams
        ):
            raise ResourceExhausted(
                f"this connection holds {policy.connection_streams} open streams; read or "
                "close one first",
                reason=Reason.CONNECTION_STREAMS,
            )
        # Counted before the (possibly remote) token check, so calls arriving meanwhile
        # see this one and cannot all slip under the cap together.
        self._by_tenant[tenant] += 1
        if streaming:
            self._streams_by_peer[peer] += 1
        released = False
        started = time.monotonic()

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            _release(self._by_tenant, tenant)
            if streaming:
                _release(self._streams_by_peer, peer)
            else:  # a stream lasts as long as its reader reads, not as long as the work
                self._call_seconds.record(tenant, time.monotonic() - started)

        try:
            await self._take_tokens(identity)
        except BaseException:
            release()
            raise
        if self._shedding is not None:
            self._shedding.count(tenant, running=self._by_tenant[tenant] - 1)
        return release

    async def _take_tokens(self, identity: Identity) -> None:
        policy = self._policy
        # One hash tag per tenant: both keys land in one Redis Cluster slot.
        prefix = f"rag:rate:{{{identity.tenant}}}"
        buckets = []
        if policy.tenant_rate:
            buckets.append((f"{prefix}:tenant", policy.tenant_rate, policy.tenant_burst))
        if policy.principal_rate:
            buckets.append(
                (
                    f"{prefix}:principal:{identity.principal}",
                    policy.principal_rate,
                    policy.principal_burst,
                )
            )
        if not buckets:
            return
        if self._shared is not None:
            wait = await self._shared.take(buckets)
        else:
            wait = self._local.take_all(buckets)
        if wait > 0:
            raise ResourceExhausted(
                "rate limit reached; retry after the delay in RetryInfo",
                reason=Reason.RATE_LIMITED,
                metadata={"tenant": identity.tenant},
                retry_after_s=round(wait, 3),
            )


def _nothing() -> None:
    pass


def _release(counts: Counter[str], key: str) -> None:
    counts[key] -= 1
    if counts[key] <= 0:
        del counts[key]  # bounded: only keys with calls running stay


class _TypicalDurations:
    """A moving average of each tenant's call durations, for the few thousand most recent
    tenants: what a refused caller is told to wait."""

    MIN_S, MAX_S = 0.1, 5.0
    _WEIGHT = 0.1  # of the newest call
    _TENANTS = 10_000

    def __init__(self) -> None:
        self._seconds: OrderedDict[str, float] = OrderedDict()

    def record(self, tenant: str, seconds: float) -> None:
        """Take in one finished call."""
        previous = self._seconds.pop(tenant, seconds)
        self._seconds[tenant] = previous + self._WEIGHT * (seconds - previous)
        if len(self._seconds) > self._TENANTS:
            self._seconds.popitem(last=False)

    def typical(self, tenant: str) -> float:
        """The tenant's typical call duration, within MIN_S and MAX_S."""
        return min(self.MAX_S, max(self.MIN_S, self._seconds.get(tenant, self.MIN_S)))
