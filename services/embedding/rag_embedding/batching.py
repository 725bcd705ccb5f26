"""Dynamic batching: texts from concurrent callers are encoded together, each text once."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from typing import Generic, TypeVar

from rag_common import tracing
from rag_common.stats import Distribution

log = logging.getLogger(__name__)

K = TypeVar("K")  # what the encoder needs to tell texts apart (here: purpose)
Vector = list[float]
Encode = Callable[[Sequence[str], K], list[Vector]]
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_RECENT_S = 1.0  # an earlier lane this recently active keeps later lanes' batches small


class DynamicBatcher(Generic[K]):
    """Collects texts from concurrent callers into batches for one blocking encoder.

    A batch is sent when it holds `max_batch` texts, when no new text arrived for
    `quiet_s`, or when its first text has waited `max_wait_s`: a burst of callers lands in one
    batch, while a lone caller waits only `quiet_s`. While one batch encodes the next fills
    up, so under load batches grow by themselves and many single-text callers get close to
    batch throughput. A text already queued or encoding for the same kind is not encoded
    again: its callers share the result. A queued text whose every caller has gone
    (cancelled, past its deadline) is dropped before it is encoded: the model's time goes
    to callers still waiting.

    Texts wait in lanes (`lane` of their kind; 0 first): a batch is taken from the first
    lane with texts, and a batch of a later lane stops filling as soon as an earlier lane
    has one. While an earlier lane has had texts in the last second, a later lane's batches
    hold at most `lane_batch[lane]` texts; otherwise they fill up like any other. Questions
    (lane 0) thus wait for at most one small batch of a bulk ingest (lane 1), never for the
    whole ingest, and an ingest with no questions around runs at full batch speed.
    """

    def __init__(
        self,
        encode: Encode,
        executor: Executor,
        *,
        max_batch: int,
        max_wait_s: float,
        quiet_s: float = 0.001,
        lane: Callable[[K], int] = lambda _: 0,
        lane_batch: Mapping[int, int] | None = None,
    ) -> None:
        self._encode = encode
        self._executor = executor
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._quiet_s = min(quiet_s, max_wait_s)
        self._lane = lane
        self._lane_batch = dict(lane_batch or {})
        self._lanes: defaultdict[int, deque[tuple[K, str]]] = defaultdict(deque)
        self._seen_at: dict[int, float] = {}  # when each lane last had a text
        self._arrived = asyncio.Event()
        # Each text's future gets its vector and the size of the batch it was encoded in.
        self._pending: dict[tuple[K, str], asyncio.Future[tuple[Vector, int]]] = {}
        self._worker: asyncio.Task[None] | None = None
        self._waiting: Counter[tuple[K, str]] = Counter()  # callers per queued text
        self._encoding: set[tuple[K, str]] = set()
        self.batches = 0  # how many encoder calls were made (for tests and metrics)
        self.dropped = 0  # queued texts no caller waited for any more
        self.batch_sizes = Distribution(BATCH_SIZE_BUCKETS)

    @property
    def queue_depth(self) -> int:
        """Texts waiting for a batch."""
        return sum(len(lane) for lane in list(self._lanes.values()))

    async def submit(self, texts: Sequence[str], kind: K) -> list[Vector]:
        """Vectors for `texts`, in order, encoded together with other callers' texts."""
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name="embedding-batcher")
        loop = asyncio.get_running_loop()
        futures, keys = [], [(kind, text) for text in texts]
        for key in keys:
            future = self._pending.get(key)
            if future is None:
                future = loop.create_future()
                self._pending[key] = future
                lane = self._lane(kind)
                self._lanes[lane].append(key)
                self._seen_at[lane] = loop.time()
                self._arrived.set()
            self._waiting[key] += 1
            futures.append(future)
        try:
            # shield: one caller giving up must not cancel a result other callers share.
            results = await asyncio.gather(*(asyncio.shield(f) for f in futures))
        finally:
            self._leave(keys)
        tracing.annotate(batch_size=max(size for _, size in results) if results else 0)
        return [vector for vector, _ in results]

    def _leave(self, keys: list[tuple[K, str]]) -> None:
        """These callers stopped waiting; drop the queued texts nobody waits for now."""
        for key in keys:
            self._waiting[key] -= 1
            if self._waiting[key] > 0:
                continue
            del self._waiting[key]
            future = self._pending.get(key)
            if future is not None and not future.done() and key not in self._encoding:
                del self._pending[key]  # its queue entry is skipped when it comes up
                future.cancel()
                self.dropped += 1

    async def close(self) -> None:
        """Stop taking batches; texts still queued fail."""
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(RuntimeError("the embedder is shutting down"))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch(loop)
            if not batch:
                continue  # every text taken had been dropped while queued
            self._encoding = set(batch)
            try:
                await self._encode_batch(loop, list(batch))
            finally:
                self._encoding = set()

    async def _next_batch(self, loop: asyncio.AbstractEventLoop) -> dict[tuple[K, str], None]:
        """Texts of the first lane that has any: a burst of them, up to the lane's limit."""
        while (lane := self._first_lane()) is None:
            self._arrived.clear()
            await self._arrived.wait()
        limit = self._max_batch
        if any(loop.time() - at < _RECENT_S for other, at in self._seen_at.items() if other < lane):
            limit = min(self._lane_batch.get(lane, self._max_batch), self._max_batch)
        queue = self._lanes[lane]
        batch: dict[tuple[K, str], None] = {}  # ordered, and each text once
        deadline = loop.time() + self._max_wait_s
        while True:
            while queue and len(batch) < limit:
                key = queue.popleft()
                if key in self._pending:
                    batch[key] = None
            earlier = self._first_lane()
            if len(batch) >= limit or (earlier is not None and earlier < lane):
                return batch  # full, or a question is waiting behind this bulk batch
            left = min(deadline - loop.time(), self._quiet_s)
            if left <= 0:
                return batch
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                return batch  # the burst is over

    def _first_lane(self) -> int | None:
        lanes = [lane for lane, queue in self._lanes.items() if queue]
        return min(lanes) if lanes else None

    async def _encode_batch(self, loop: asyncio.AbstractEventLoop, batch: list) -> None:
        by_kind: dict[K, list[str]] = {}
        for kind, text in batch:
            by_kind.setdefault(kind, []).append(text)
        for kind, texts in by_kind.items():
            self.batches += 1
            self.batch_sizes.observe(len(texts))
            try:
                vectors = await loop.run_in_executor(self._executor, self._encode, texts, kind)
            except Exception as exc:
                for text in texts:
                    self._settle((kind, text), exc=exc)
                continue
            for text, vector in zip(texts, vectors, strict=True):
                self._settle((kind, text), result=(vector, len(texts)))

    def _settle(
        self, key, *, result: tuple[Vector, int] | None = None, exc: Exception | None = None
    ) -> None:
        future = self._pending.pop(key, None)
        if future is None or future.done():
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)
