from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from rag_embedding.batching import DynamicBatcher


class RecordingEncoder:
    """Turns a text into [len(text), 0]; records every batch it was given."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.batches: list[list[str]] = []
        self.delay_s = delay_s
        self.fail = False
        self._lock = threading.Lock()

    def __call__(self, texts):
        with self._lock:
            self.batches.append(list(texts))
        if self.delay_s:
            threading.Event().wait(self.delay_s)
        if self.fail:
            raise RuntimeError("model crashed")
        return [[float(len(t)), 0.0] for t in texts]


@pytest.fixture
def executor():
    pool = ThreadPoolExecutor(max_workers=1)
    yield pool
    pool.shutdown()


async def test_concurrent_single_text_callers_share_batches(executor):
    encoder = RecordingEncoder(delay_s=0.02)
    batcher = DynamicBatcher(encoder, executor, max_batch=16, max_wait_s=0.005)
    results = await asyncio.gather(*(batcher.submit([f"text {i:02d}"]) for i in range(32)))
    assert results == [[[7.0, 0.0]]] * 32
    assert len(encoder.batches) <= 4  # 32 callers, batches of up to 16
    assert max(len(b) for b in encoder.batches) == 16
    await batcher.close()


async def test_identical_texts_in_flight_are_encoded_once(executor):
    encoder = RecordingEncoder(delay_s=0.01)
    batcher = DynamicBatcher(encoder, executor, max_batch=8, max_wait_s=0.005)
    results = await asyncio.gather(*(batcher.submit(["same", "other"]) for _ in range(10)))
    assert all(r == [[4.0, 0.0], [5.0, 0.0]] for r in results)
    assert sorted(t for b in encoder.batches for t in b) == ["other", "same"]
    await batcher.close()


async def test_an_encoder_failure_reaches_every_caller_of_the_batch(executor):
    encoder = RecordingEncoder()
    encoder.fail = True
    batcher = DynamicBatcher(encoder, executor, max_batch=8, max_wait_s=0.005)
    outcomes = await asyncio.gather(
        batcher.submit(["a"]), batcher.submit(["b"]), return_exceptions=True
    )
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    encoder.fail = False
    assert await batcher.submit(["a"]) == [[1.0, 0.0]]  # and it keeps working
    await batcher.close()


async def test_a_caller_that_gives_up_does_not_cancel_a_shared_text(executor):
    encoder = RecordingEncoder(delay_s=0.05)
    batcher = DynamicBatcher(encoder, executor, max_batch=8, max_wait_s=0.001)
    impatient = asyncio.ensure_future(batcher.submit(["shared"]))
    patient = asyncio.ensure_future(batcher.submit(["shared"]))
    await asyncio.sleep(0.01)
    impatient.cancel()
    assert await patient == [[6.0, 0.0]]
    await batcher.close()


async def test_texts_whose_callers_all_left_are_not_encoded(executor):
    encoder = RecordingEncoder(delay_s=0.2)
    batcher = DynamicBatcher(encoder, executor, max_batch=1, max_wait_s=0.001)
    busy = asyncio.ensure_future(batcher.submit(["keeps the model busy"]))
    await asyncio.sleep(0.05)  # now encoding; the next texts queue behind it
    gone = asyncio.ensure_future(batcher.submit(["nobody waits for me"]))
    shared = [asyncio.ensure_future(batcher.submit(["one of two left"])) for _ in range(2)]
    waiting = asyncio.ensure_future(batcher.submit(["still wanted"]))
    await asyncio.sleep(0.01)
    gone.cancel()  # its deadline passed, say
    shared[0].cancel()
    assert await waiting == [[12.0, 0.0]]
    assert await shared[1] == [[15.0, 0.0]]  # one caller left: still encoded
    await busy
    encoded = [t for b in encoder.batches for t in b]
    assert "nobody waits for me" not in encoded
    assert encoded.count("one of two left") == 1
    assert batcher.dropped == 1
    # Asked again later, it is encoded like any other text.
    assert await batcher.submit(["nobody waits for me"]) == [[19.0, 0.0]]
    await batcher.close()


async def test_texts_queued_behind_a_batch_go_the_moment_the_model_is_free(executor):
    """They waited a whole batch already: the next batch takes what waits and does not
    wait out the quiet gap for more, so a text arriving just after it goes in a third."""
    encoder = RecordingEncoder(delay_s=0.3)
    batcher = DynamicBatcher(encoder, executor, max_batch=8, max_wait_s=0.5, quiet_s=0.5)
    first = asyncio.ensure_future(batcher.submit(["first"]))
    # The model was idle: "first" waits out its quiet gap, alone, then encodes until 0.8 s.
    await asyncio.sleep(0.55)
    queued = [asyncio.ensure_future(batcher.submit([f"queued {i}"])) for i in range(3)]
    await first
    await asyncio.sleep(0.02)  # the queued texts' batch is encoding now
    late = await batcher.submit(["late"])
    await asyncio.gather(*queued)
    assert encoder.batches == [["first"], ["queued 0", "queued 1", "queued 2"], ["late"]]
    assert late == [[4.0, 0.0]]
    await batcher.close()


async def test_each_model_call_is_timed_on_its_thread_not_by_the_event_loop(executor):
    encoder = RecordingEncoder(delay_s=0.02)
    batcher = DynamicBatcher(encoder, executor, max_batch=8, max_wait_s=0.001)
    assert await batcher.submit(["first"]) == [[5.0, 0.0]]
    second = asyncio.ensure_future(batcher.submit(["second"]))
    while not encoder.batches[1:]:
        await asyncio.sleep(0.001)
    time.sleep(0.2)  # the event loop is busy long after the model has finished
    await second
    counts, seconds = batcher.encode_seconds.snapshot()
    assert sum(counts) == 2
    # Two calls of 20 ms; timed from the loop the second alone would take 200 ms.
    assert 0.04 <= seconds < 0.15
    await batcher.close()
