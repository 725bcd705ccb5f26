"""Plain counters a core object keeps about its own work, for the metrics endpoint to read.

The cores stay free of any metrics library: they count into these, and each service's
`metrics.py` turns them into Prometheus families when scraped (`rag_common.telemetry.metrics`).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence


class Distribution:
    """Observations counted into buckets, with their sum: a histogram without a library."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self._counts = [0] * (len(self.buckets) + 1)  # the last: above every edge
        self._sum = 0.0

    def observe(self, value: float) -> None:
        """Count one observation."""
        self._counts[bisect.bisect_left(self.buckets, value)] += 1
        self._sum += value

    def snapshot(self) -> tuple[list[int], float]:
        """Counts per bucket (the last above every edge) and the sum of observations."""
        return list(self._counts), self._sum  # list(): one C-level copy, safe off the loop
