from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from rag_embedding.batching import DynamicBatcher


class RecordingEncoder:
    """Turns a text into [len(text), kind]; records every batch it was given."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.batches: list[list[str]] = []
        self.delay_s = delay_s
        self.fail = False
        self._lock = threading.Lock()

    def __call__(self, texts, kind):
        with self._lock:
            self.batches.append(list(texts))
        if self.delay_s:
            threading.Event().wait(self.delay_s)
        if self.fail:
            raise RuntimeError("model crashed")
        return [[float(len(t)), float(kind)] for t in texts]


@pytest.fixture
def executor():
    pool = ThreadPoolExecutor(max_workers=1)
    yield pool
    pool.shutdown()


async def test_concurrent_single_text_callers_share_batches(executor):
    encoder = RecordingEncoder(delay_s=0.02)
    batcher = DynamicBatcher(encoder, executor, max_batch=16, max_wait_s=0.005)
    results = await asyncio.gather(*(batcher.submit([f"text {i:02d}"], 1) for i in range(32)))
    assert results == [[[7.0, 1.0]]] * 32
    assert len(encoder.batches) <= 4  # 32 callers, batches of up to 16
    assert max(len(b) for b in encoder.batches) == 16
    await batcher.close()


async def test_identical_texts_in_flight_are_encoded_once(executor):
    encoder = RecordingEncoder(delay_s=0.01)
    batcher = DynamicBatcher(encoder, executor, max_batch=8, max_wait_s=0.005)
    results = await asyncio.gather(*(batcher.submit(["same", "other"], 0) for _ in range(10)))
    assert all(r == [[4.0, 0.0], [5.0, 0.0]] for r in results)
    assert sorted(t for b in encoder.batches for t in b) == ["other", "same"]
    await batcher.close()


async def test_kinds_are_never_mixed_in_one_encoder_call(executor):
    encoder = RecordingEncoder()
    batcher = DynamicBatcher(encoder, executor, max_batch=8, max_wait_s=0.005)
    query, document = await asyncio.gather(batcher.submit(["x"], 1), batcher.submit(["x"], 2))
    assert query == [[1.0, 1.0]] and document == [[1.0, 2.0]]
    await batcher.close()


async def test_an_encoder_failure_reaches_every_caller_of_the_batch(executor):
    encoder = RecordingEncoder()
    encoder.fail = True
    batcher = DynamicBatcher(encoder, executor, max_batch=8, max_wait_s=0.005)
    outcomes = await asyncio.gather(
        batcher.submit(["a"], 0), batcher.submit(["b"], 0), return_exceptions=True
    )
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    encoder.fail = False
    assert await batcher.submit(["a"], 0) == [[1.0, 0.0]]  # and it keeps working
    await batcher.close()


async def test_a_caller_that_gives_up_does_not_cancel_a_shared_text(executor):
    encoder = RecordingEncoder(delay_s=0.05)
    batcher = DynamicBatcher(encoder, executor, max_batch=8, max_wait_s=0.001)
    impatient = asyncio.ensure_future(batcher.submit(["shared"], 0))
    patient = asyncio.ensure_future(batcher.submit(["shared"], 0))
    await asyncio.sleep(0.01)
    impatient.cancel()
    assert await patient == [[6.0, 0.0]]
    await batcher.close()


async def test_texts_whose_callers_all_left_are_not_encoded(executor):
    encoder = RecordingEncoder(delay_s=0.2)
    batcher = DynamicBatcher(encoder, executor, max_batch=1, max_wait_s=0.001)
    busy = asyncio.ensure_future(batcher.submit(["keeps the model busy"], 0))
    await asyncio.sleep(0.05)  # now encoding; the next texts queue behind it
    gone = asyncio.ensure_future(batcher.submit(["nobody waits for me"], 0))
    shared = [asyncio.ensure_future(batcher.submit(["one of two left"], 0)) for _ in range(2)]
    waiting = asyncio.ensure_future(batcher.submit(["still wanted"], 0))
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
    assert await batcher.submit(["nobody waits for me"], 0) == [[19.0, 0.0]]
    await batcher.close()


async def test_a_question_waits_for_one_small_ingest_batch_not_the_whole_ingest(executor):
    encoder = RecordingEncoder(delay_s=0.01)
    batcher = DynamicBatcher(
        encoder,
        executor,
        max_batch=64,
        max_wait_s=0.005,
        lane=lambda kind: 0 if kind == 1 else 1,  # kind 1: questions; kind 2: ingest
        lane_batch={1: 8},
    )
    await batcher.submit(["an earlier question"], 1)  # questions are coming in
    ingest = asyncio.ensure_future(batcher.submit([f"chunk {i:03d}" for i in range(200)], 2))
    await asyncio.sleep(0.015)  # the ingest has started
    question = await batcher.submit(["the question"], 1)
    assert question == [[12.0, 1.0]]
    order = [t for b in encoder.batches for t in b]
    # Encoded after at most two ingest batches of 8 (the one running and one being filled),
    # with most of the 200 chunks still to come.
    assert order.index("the question") <= 1 + 16
    assert max(len(b) for b in encoder.batches if b[0].startswith("chunk")) <= 8
    assert len(await ingest) == 200  # and the ingest still finishes, whole
    await batcher.close()


async def test_an_ingest_with_no_questions_around_fills_whole_batches(executor):
    encoder = RecordingEncoder(delay_s=0.005)
    batcher = DynamicBatcher(
        encoder, executor, max_batch=32, max_wait_s=0.005, lane=lambda kind: kind, lane_batch={1: 4}
    )
    await batcher.submit([f"chunk {i:03d}" for i in range(96)], 1)
    assert max(len(b) for b in encoder.batches) == 32
    await batcher.close()
