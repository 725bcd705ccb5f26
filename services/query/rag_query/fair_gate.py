"""Fair admission to the question pipeline: a few questions at a time, tenants taking turns.

At most `running` questions go through embedding, retrieval and generation at once (more
only slow every one of them down on the same CPUs); the rest wait in one queue per tenant,
and a freed place goes to the next tenant in turn, not to the longest queue. A tenant with
no question running does not wait at all: its question takes one of `running` further
places kept for such first questions. A tenant with 64 questions waiting therefore never
delays another tenant's one question by a turn.

While other tenants are asking too, one tenant holds at most `tenant_share` places (the
service gives one per two CPUs): the places it would fill otherwise run on the same CPUs
as the others' questions, which then wait behind its backlog. Alone, it may use them all.

And while another tenant's lone question runs (a user asking one thing at a time), a
tenant with more questions (one running and more waiting: a flood, a batch job) starts no
new one: its running questions finish, the next starts when the lone one is done. Each
question of the two shares the CPUs for a while, not all of it, and they take turns one
question each, as fair queueing gives a sparse flow its packet before a bulk flow's next.
Tenants that all have a backlog take turns as above. Should lone questions of many tenants
keep the pipeline busy without a pause, a backlog waits for them up to its wait limit (and
is then refused as overloaded): those tenants together are using the CPUs, each within its
share.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, OrderedDict, deque
from collections.abc import AsyncIterator, Callable

# A tenant counts as asking for this long after its last question began or ended: one
# user's questions come a few seconds apart, and each should find the pipeline shared.
ASKING_FOR_S = 5.0


class GateFull(Exception):
    """No place for this question: too many are admitted already, or its wait ran out."""


class FairGate:
    """`running` places, and room for `admitted` questions in all (running and waiting)."""

    def __init__(
        self,
        running: int,
        admitted: int,
        *,
        tenant_share: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._capacity = min(running, admitted)
        self._tenant_share = min(tenant_share, self._capacity) or self._capacity
        self._admitted_limit = admitted
        self._clock = clock
        self._running = 0  # in the shared places
        self._firsts = 0  # in the places kept for tenants' first questions
        self._running_by: Counter[str] = Counter()  # in either kind of place
        # Tenants with questions waiting, in turn order; each with its waiters, oldest first.
        self._waiting: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()
        self._waiting_count = 0
        self._asked_at: OrderedDict[str, float] = OrderedDict()  # oldest first

    @property
    def admitted(self) -> int:
        """Questions running or waiting now."""
        return self._running + self._firsts + self._waiting_count

    @property
    def full(self) -> bool:
        """Whether a new question would be refused."""
        return self.admitted >= self._admitted_limit

    @contextlib.asynccontextmanager
    async def place(self, tenant: str, wait_s: float) -> AsyncIterator[None]:
        """Hold a running place for `tenant`'s question, waiting at most `wait_s` for it."""
        if self.full:
            raise GateFull("too many questions admitted")
        self._asking(tenant)
        self._let_next_in()  # a share may have grown since: no one jumps an admissible waiter
        first = False
        if self._yields(tenant):
            await self._wait_turn(tenant, wait_s)  # counted as running when let in
        elif self._running < self._capacity and self._running_by[tenant] < self._share():
            self._running += 1
            self._running_by[tenant] += 1
        elif not self._running_by[tenant] and self._firsts < self._capacity:
            first = True
            self._firsts += 1
            self._running_by[tenant] += 1
        else:
            await self._wait_turn(tenant, wait_s)  # counted as running when let in
        try:
            yield
        finally:
            self._leave(tenant, first)
            self._asking(tenant)
            self._let_next_in()

    def _share(self) -> int:
        """Places one tenant may hold now: all, unless another tenant is asking too."""
        if self._tenant_share == self._capacity:
            return self._capacity
        horizon = self._clock() - ASKING_FOR_S
        while self._asked_at and next(iter(self._asked_at.values())) < horizon:
            self._asked_at.popitem(last=False)
        asking = self._asked_at.keys() | self._running_by.keys()
        return self._tenant_share if len(asking) > 1 else self._capacity

    def _yields(self, tenant: str) -> bool:
        """Whether `tenant`, wanting more than one question at once, must let another
        tenant's lone question finish first (see the module's docstring)."""
        if self._tenant_share == self._capacity:
            return False
        if not self._running_by[tenant] and tenant not in self._waiting:
            return False  # its own lone question
        return any(
            count == 1 and other != tenant and other not in self._waiting
            for other, count in self._running_by.items()
        )

    def _asking(self, tenant: str) -> None:
        if self._tenant_share < self._capacity:
            self._asked_at[tenant] = self._clock()
            self._asked_at.move_to_end(tenant)

    def _leave(self, tenant: str, first: bool) -> None:
        self._running_by[tenant] -= 1
        if not self._running_by[tenant]:
            del self._running_by[tenant]
        if first:
            self._firsts -= 1
        else:
            self._running -= 1

    async def _wait_turn(self, tenant: str, wait_s: float) -> None:
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(tenant, deque()).append(turn)
        self._waiting_count += 1
        try:
            await asyncio.wait_for(asyncio.shield(turn), wait_s)
        except (TimeoutError, asyncio.CancelledError) as exc:
            if turn.done() and not turn.cancelled():
                # The place was given just as the wait ended: hand it on, not lose it.
                self._leave(tenant, first=False)
                self._let_next_in()
            else:
                turn.cancel()
                self._forget(tenant, turn)
            if isinstance(exc, TimeoutError):
                raise GateFull("no place in time") from None
            raise

    def _let_next_in(self) -> None:
        """Give free places to waiting tenants in turn, each within its share."""
        if not self._waiting:
            return
        share = self._share()
        moved = True
        while moved and self._waiting and self._running < self._capacity:
            moved = False
            for tenant in list(self._waiting):
                if self._running >= self._capacity:
                    return
                if self._running_by[tenant] >= share or self._yields(tenant):
                    continue
                turns = self._waiting[tenant]
                turn = turns.popleft()
                self._waiting_count -= 1
                moved = True
                if turns:
                    self._waiting.move_to_end(tenant)  # its next question waits for the others
                else:
                    del self._waiting[tenant]
                if not turn.done():
                    self._running += 1
                    self._running_by[tenant] += 1
                    turn.set_result(None)

    def _forget(self, tenant: str, turn: asyncio.Future[None]) -> None:
        turns = self._waiting.get(tenant)
        if turns is None or turn not in turns:
            return
        turns.remove(turn)
        self._waiting_count -= 1
        if not turns:
            del self._waiting[tenant]
