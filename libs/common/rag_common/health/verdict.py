"""How well something works, and the one rule that turns a reading into that verdict."""

from __future__ import annotations

from enum import Enum


class Health(Enum):
    """How well something works."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"

    @property
    def rank(self) -> int:
        """0 healthy, 1 degraded, 2 unhealthy: the order in which verdicts are worse."""
        return _RANK[self]


_RANK = {Health.HEALTHY: 0, Health.DEGRADED: 1, Health.UNHEALTHY: 2}


def worst(*verdicts: Health) -> Health:
    """The worst of `verdicts` (healthy when there are none)."""
    return max(verdicts, key=_RANK.__getitem__, default=Health.HEALTHY)


def judge(value: float, warning: float, critical: float, *, low_is_bad: bool = False) -> Health:
    """Degraded past `warning`, unhealthy past `critical`: above them, or below them for a
    reading where less is worse (a cache's hit rate)."""
    past = (lambda limit: value < limit) if low_is_bad else (lambda limit: value > limit)
    if past(critical):
        return Health.UNHEALTHY
    return Health.DEGRADED if past(warning) else Health.HEALTHY
