"""An in-process least-recently-used cache whose entries expire, bounded in entries and bytes."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


def byte_length(value: bytes) -> int:
    """The size of a bytes value, as `LocalTTLCache` counts it."""
    return len(value)


class LocalTTLCache(Generic[V]):
    """Holds at most `max_entries` values and `max_bytes` of them, each for `ttl_s` seconds.

    A count of entries alone bounds nothing: one large answer can weigh a thousand small
    ones. `size_of` says what a value weighs (default: 1, so only entries are bounded); a
    value heavier than `max_bytes` on its own is not kept at all.
    """

    def __init__(
        self,
        max_entries: int,
        ttl_s: float,
        *,
        max_bytes: int | None = None,
        size_of: Callable[[V], int] = lambda value: 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._entries: OrderedDict[Hashable, tuple[float, V, int]] = OrderedDict()
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._size_of = size_of
        self._ttl_s = ttl_s
        self._clock = clock
        self.bytes = 0  # what the values held weigh now
        self.evictions = 0  # entries dropped to make room (not counting expiries)

    def get(self, key: Hashable) -> V | None:
        """The value, or None when absent or expired."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value, _ = entry
        if expires <= self._clock():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: Hashable, value: V) -> None:
        """Store a value, evicting the least recently used ones while over a bound."""
        size = self._size_of(value)
        if key in self._entries:
            self._drop(key)
        if self._max_bytes is not None and size > self._max_bytes:
            return
        self._entries[key] = (self._clock() + self._ttl_s, value, size)
        self.bytes += size
        while len(self._entries) > self._max_entries or (
            self._max_bytes is not None and self.bytes > self._max_bytes
        ):
            self._drop(next(iter(self._entries)))
            self.evictions += 1

    def forget(self, matches: Callable[[Hashable], bool]) -> int:
        """Drop every entry whose key `matches` (a tenant's, when it erases its data)."""
        keys = [key for key in self._entries if matches(key)]
        for key in keys:
            self._drop(key)
        return len(keys)

    def _drop(self, key: Hashable) -> None:
        _, _, size = self._entries.pop(key)
        self.bytes -= size

    def __len__(self) -> int:
        return len(self._entries)
