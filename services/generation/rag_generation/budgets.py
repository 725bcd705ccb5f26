"""Daily LLM budgets per tenant: tokens and cost spent on paid providers since midnight UTC.

Once a tenant has spent its tokens or its dollars for the day, its questions go only to
free providers (the local model, extractive). With Redis the counts are shared by every
generation replica; without it, or while it fails, each replica counts for itself. A check
and the charge after the answer are not one transaction, so concurrent answers can go past
a budget by what they cost; the next question after them finds it spent.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio import Redis, RedisCluster

from rag_common.shared_redis import best_effort, redis_breaker

_DAY_S = 86_400
_MEANWHILE = "LLM budgets counted per replica"


@dataclass(frozen=True)
class BudgetLimits:
    """What one tenant may spend on paid providers a day; 0 means no limit."""

    tokens: int = 0
    cost_usd: float = 0.0

    @property
    def any(self) -> bool:
        """Whether a limit is set at all."""
        return bool(self.tokens or self.cost_usd)


class DailyBudgets:
    """Each tenant's paid tokens and cost today, and whether its budget is spent."""

    def __init__(
        self,
        limits: BudgetLimits,
        shared: Redis | RedisCluster | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.limits = limits
        self._shared = shared
        self._clock = clock
        self._local: dict[tuple[str, str], tuple[int, float]] = {}
        self.breaker = redis_breaker()

    def seconds_to_reset(self) -> float:
        """Until the budgets start again (midnight UTC)."""
        return _DAY_S - self._clock() % _DAY_S

    async def spent(self, tenant: str) -> bool:
        """Whether `tenant` has used up today's tokens or dollars."""
        if not self.limits.any:
            return False
        tokens, cost = await self._read(tenant)
        limits = self.limits
        return bool(
            (limits.tokens and tokens >= limits.tokens)
            or (limits.cost_usd and cost >= limits.cost_usd)
        )

    async def charge(self, tenant: str, tokens: int, cost_usd: float) -> None:
        """Add one paid answer's tokens and cost to `tenant`'s day."""
        if not self.limits.any:
            return
        key = self._key(tenant)
        if self._shared is not None:
            shared = self._shared

            async def add() -> bool:
                async with shared.pipeline(transaction=False) as pipe:
                    pipe.hincrby(key, "tokens", tokens)
                    pipe.hincrbyfloat(key, "cost", cost_usd)
                    pipe.expire(key, 2 * _DAY_S)
                    await pipe.execute()
                return True

            if await best_effort(self.breaker, add, False, meanwhile=_MEANWHILE):
                return
        local_key = (tenant, self._day())
        old_tokens, old_cost = self._local.get(local_key, (0, 0.0))
        self._local[local_key] = (old_tokens + tokens, old_cost + cost_usd)
        self._forget_other_days()

    async def _read(self, tenant: str) -> tuple[int, float]:
        if self._shared is not None:
            shared, key = self._shared, self._key(tenant)
            spent = await best_effort(
                self.breaker,
                lambda: shared.hmget(key, "tokens", "cost"),
                None,
                meanwhile=_MEANWHILE,
            )
            if spent is not None:
                tokens, cost = spent
                return int(tokens or 0), float(cost or 0.0)
        return self._local.get((tenant, self._day()), (0, 0.0))

    def _day(self) -> str:
        return datetime.datetime.fromtimestamp(self._clock(), datetime.UTC).strftime("%Y%m%d")

    def _key(self, tenant: str) -> str:
        return f"rag:llm-budget:{{{tenant}}}:{self._day()}"

    def _forget_other_days(self) -> None:
        today = self._day()
        for key in [k for k in self._local if k[1] != today]:
            del self._local[key]
