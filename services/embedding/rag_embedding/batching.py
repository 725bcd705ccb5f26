"""Dynamic batching: texts from concurrent callers are encoded together, each text once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor

from rag_common.telemetry import tracing
from rag_common.telemetry.stats import Distribution

Vector = list[float]
Encode = Callable[[Sequence[str]], list[Vector]]
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
ENCODE_SECONDS_BUCKETS = (0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56)


class DynamicBatcher:
    """Collects texts from concurrent callers into batches for one blocking encoder.

    When the model is idle, a batch is sent when it holds `max_batch` texts, when no new
    text arrived for `quiet_s`, or when its first text has waited `max_wait_s`: a burst of
    callers lands in one batch, while a lone caller waits only `quiet_s`. While one batch
    encodes the next fills up, and goes the moment the model is free: those texts have
    waited a whole batch already, so under load batches grow by themselves and many
    single-text callers get close to batch throughput. A text already queued or encoding
    is not encoded again: its callers share the result. A queued text whose every caller
    has gone (cancelled, past its deadline) is dropped before it is encoded: the model's
    time goes to callers still waiting.
    """

    def __init__(
        self,
        encode: Encode,
        executor: Executor,
        *,
        max_batch: int,
        max_wait_s: float,
        quiet_s: float = 0.001,
    ) -> None:
        self._encode = encode
        self._executor = executor
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._quiet_s = min(quiet_s, max_wait_s)
        self._queue: deque[str] = deque()
        self._arrived = asyncio.Event()
        # Each text's future gets its vector and the size of the batch it was encoded in.
        self._pending: dict[str, asyncio.Future[tuple[Vector, int]]] = {}
        self._worker: asyncio.Task[None] | None = None
        self._waiting: Counter[str] = Counter()  # callers per queued text
        self._encoding: set[str] = set()
        self.batches = 0  # how many encoder calls were made (for tests and metrics)
        self.dropped = 0  # queued texts no caller waited for any more
        self.batch_sizes = Distribution(BATCH_SIZE_BUCKETS)
        # Timed on the encoding thread: the model's own time, waits for the event loop left
        # out, so a model slowed by its neighbours (other processes, the other lane) shows.
        self.encode_seconds = Distribution(ENCODE_SECONDS_BUCKETS)

    @property
    def queue_depth(self) -> int:
        """Texts waiting for a batch."""
        return len(self._queue)

    async def submit(self, texts: Sequence[str]) -> list[Vector]:
        """Vectors for `texts`, in order, encoded together with other callers' texts."""
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name="embedding-batcher")
        loop = asyncio.get_running_loop()
        futures = []
        for text in texts:
            future = self._pending.get(text)
            if future is None:
                future = loop.create_future()
                self._pending[text] = future
                self._queue.append(text)
                self._arrived.set()
            self._waiting[text] += 1
            futures.append(future)
        try:
            # shield: one caller giving up must not cancel a result other callers share.
            results = await asyncio.gather(*(asyncio.shield(f) for f in futures))
        finally:
            self._leave(texts)
        tracing.annotate(batch_size=max(size for _, size in results) if results else 0)
        return [vector for vector, _ in results]

    def _leave(self, texts: Sequence[str]) -> None:
        """These callers stopped waiting; drop the queued texts nobody waits for now."""
        for text in texts:
            self._waiting[text] -= 1
            if self._waiting[text] > 0:
                continue
            del self._waiting[text]
            future = self._pending.get(text)
            if future is not None and not future.done() and text not in self._encoding:
                del self._pending[text]  # its queue entry is skipped when it comes up
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
        queued_while_encoding = False
        while True:
            batch = await self._next_batch(loop, gather=not queued_while_encoding)
            queued_while_encoding = False
            if not batch:
                continue  # every text taken had been dropped while queued
            self._encoding = set(batch)
            try:
                await self._encode_batch(loop, batch)
            finally:
                self._encoding = set()
            queued_while_encoding = bool(self._queue)

    async def _next_batch(self, loop: asyncio.AbstractEventLoop, *, gather: bool) -> list[str]:
        """Queued texts, up to `max_batch`, each once; with `gather`, also the rest of a
        burst that is still arriving."""
        while not self._queue:
            self._arrived.clear()
            await self._arrived.wait()
        batch: dict[str, None] = {}  # ordered, and each text once
        deadline = loop.time() + self._max_wait_s
        while True:
            while self._queue and len(batch) < self._max_batch:
                text = self._queue.popleft()
                if text in self._pending:
                    batch[text] = None
            left = min(deadline - loop.time(), self._quiet_s)
            if len(batch) >= self._max_batch or left <= 0 or not gather:
                return list(batch)
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                return list(batch)  # the burst is over

    async def _encode_batch(self, loop: asyncio.AbstractEventLoop, texts: list[str]) -> None:
        self.batches += 1
        self.batch_sizes.observe(len(texts))
        try:
            vectors, seconds = await loop.run_in_executor(self._executor, self._timed_encode, texts)
        except Exception as exc:
            for text in texts:
                self._settle(text, exc=exc)
            return
        self.encode_seconds.observe(seconds)
        for text, vector in zip(texts, vectors, strict=True):
            self._settle(text, result=(vector, len(texts)))

    def _timed_encode(self, texts: list[str]) -> tuple[list[Vector], float]:
        started = time.perf_counter()
        vectors = self._encode(texts)
        return vectors, time.perf_counter() - started

    def _settle(
        self, text: str, *, result: tuple[Vector, int] | None = None, exc: Exception | None = None
    ) -> None:
        future = self._pending.pop(text, None)
        if future is None or future.done():
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)
