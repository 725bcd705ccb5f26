"""Questions and ingest are encoded in separate lanes: a question never waits for an ingest
batch, and ingest runs below the questions' CPU priority."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from rag_embedding.embedder import Embedder, Purpose


class GatedModel:
    """Encodes instantly, except documents while `gate` is shut; records the priority of
    the thread each call ran on."""

    name = "gated"
    dimension = 2
    max_sequence_length = 8

    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate
        self.niceness: dict[Purpose, int] = {}

    def encode(self, texts, purpose):
        if not texts[0].startswith("warm-up"):
            self.niceness[purpose] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
            if purpose is Purpose.DOCUMENT:
                self.gate.wait(10)
        return [[float(len(text)), 0.0] for text in texts]


@pytest.fixture
async def lanes():
    gate = threading.Event()
    models: list[GatedModel] = []

    def load() -> GatedModel:
        models.append(GatedModel(gate))
        return models[-1]

    embedder = Embedder(load, max_texts=64, max_text_chars=100, bulk_niceness=5)
    await embedder.start()
    yield embedder, gate, models
    gate.set()
    await embedder.close()


async def test_a_question_is_answered_while_an_ingest_batch_is_still_encoding(lanes):
    embedder, gate, _ = lanes
    ingest = asyncio.ensure_future(embedder.embed([f"chunk {i}" for i in range(40)], "document"))
    await asyncio.sleep(0.05)  # the first ingest batch is on the model, and stays there
    [vector] = await asyncio.wait_for(embedder.embed(["a question"], "query"), 5)
    assert vector == [10.0, 0.0]
    assert not ingest.done()
    gate.set()
    assert len(await ingest) == 40  # the ingest still finishes, whole


async def test_ingest_encodes_below_the_priority_of_questions(lanes):
    embedder, gate, models = lanes
    gate.set()
    await embedder.embed(["a question"], "query")
    await embedder.embed(["a chunk"], "document")
    base = os.getpriority(os.PRIO_PROCESS, 0)
    seen = {purpose: n for model in models for purpose, n in model.niceness.items()}
    assert seen[Purpose.QUERY] == base
    assert seen[Purpose.DOCUMENT] == min(base + 5, 19)
    assert len(models) == 2  # each lane has its own model (and its runtime's threads)
