"""The share of a server's call slots that calls answering without a key may hold.

Health checks and reflection answer anyone, so gRPC counts them against the same
`maximum_concurrent_rpcs` as every tenant's questions: 300 reflection streams opened and
never used took every slot of a port. Here they get at most a fraction of the slots in
all, a few per peer address, and a stream that sends nothing for `idle_s` is ended.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from rag_common.errors import ResourceExhausted
from rag_common.reasons import Reason

# Of the server's slots, at most this share for keyless calls; the rest stay for callers
# with a key whatever keyless callers do.
KEYLESS_SHARE = 0.125
PER_PEER = 8  # keyless calls at once from one address (a probe needs one)
IDLE_S = 10.0  # a keyless stream that sends nothing for this long is ended


class KeylessShare:
    """Counts keyless calls in flight, in all and per peer address, and refuses past the cap."""

    def __init__(self, max_concurrent_rpcs: int, *, per_peer: int = PER_PEER) -> None:
        self.limit = max(2, int(max_concurrent_rpcs * KEYLESS_SHARE))
        self.per_peer = min(per_peer, self.limit)
        self._in_flight = 0
        self._by_peer: Counter[str] = Counter()

    def take(self, peer: str) -> Callable[[], None]:
        """Take a slot for a call from `peer` ("ipv4:10.0.0.7:51234"), or raise
        ResourceExhausted; returns what gives it back."""
        address = _address(peer)
        if self._in_flight >= self.limit or self._by_peer[address] >= self.per_peer:
            raise ResourceExhausted(
                "too many health or reflection calls are open; close one first",
                reason=Reason.KEYLESS_CALLS,
                retry_after_s=1.0,
            )
        self._in_flight += 1
        self._by_peer[address] += 1
        given_back = False

        def give_back() -> None:
            nonlocal given_back
            if given_back:
                return
            given_back = True
            self._in_flight -= 1
            self._by_peer[address] -= 1
            if not self._by_peer[address]:
                del self._by_peer[address]

        return give_back

    @property
    def in_flight(self) -> int:
        """Keyless calls open now."""
        return self._in_flight


def _address(peer: str) -> str:
    """The address of a peer without its port: one client opens many connections."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0]
    if kind == "ipv4":
        return rest.split(":", 1)[0]
    return peer  # unix sockets and the like: the whole name
