"""Concurrent questions of one caller share an Embed call; nothing else about them changes."""

from __future__ import annotations

import asyncio
import time

import pytest

from rag_common import context
from rag_common.errors import InvalidArgument, Unavailable
from rag_common.security.identity import Identity
from rag_query.coalescing import CoalescingEmbedder
from tests.support.turns import until

ACME = Identity("app", "acme", frozenset({"reader"}))
GLOBEX = Identity("app", "globex", frozenset({"reader"}))


class GatedEmbedder:
    """Records each call (texts, caller, deadline); holds calls while its gate is shut."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], Identity | None, float | None]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.down = False

    async def embed(self, texts, purpose):
        self.calls.append((list(texts), context.caller(), context.deadline()))
        await self.gate.wait()
        if self.down:
            raise Unavailable("embedding is down", reason="DEPENDENCY_UNAVAILABLE")
        if "bad" in texts:
            raise InvalidArgument(f"texts[{texts.index('bad')}]", "not a text")
        return [[float(len(text))] for text in texts]


def ask(coalescer, text: str, identity: Identity = ACME, deadline_s: float | None = None):
    """A question as the engine asks it: in its own task, with its caller and deadline."""

    async def question():
        deadline = None if deadline_s is None else time.monotonic() + deadline_s
        context.enter(context.RequestScope(f"request-{text}", deadline))
        context.set_identity(identity)
        [vector] = await coalescer.embed([text], "query")
        return vector

    return asyncio.ensure_future(question())


async def held(embedder: GatedEmbedder, coalescer, first: str = "first"):
    """A first question in flight, held at the gate."""
    embedder.gate.clear()
    task = ask(coalescer, first)
    await until(lambda: embedder.calls and embedder.calls[-1][0] == [first])
    return task


async def test_a_lone_question_is_sent_at_once_and_alone():
    embedder = GatedEmbedder()
    coalescer = CoalescingEmbedder(embedder)
    assert await ask(coalescer, "tides") == [5.0]
    assert embedder.calls == [(["tides"], ACME, None)]


async def test_questions_arriving_during_a_call_go_together_in_the_next():
    embedder = GatedEmbedder()
    coalescer = CoalescingEmbedder(embedder, max_in_flight=1)
    first = await held(embedder, coalescer)
    rest = [ask(coalescer, text) for text in ("kelp", "dunes", "glaciers")]
    await asyncio.sleep(0)
    embedder.gate.set()
    assert await first == [5.0]
    assert [await task for task in rest] == [[4.0], [5.0], [8.0]]
    assert [texts for texts, _, _ in embedder.calls] == [["first"], ["kelp", "dunes", "glaciers"]]
    assert (coalescer.calls, coalescer.texts) == (2, 4)


async def test_two_callers_questions_never_share_a_call():
    embedder = GatedEmbedder()
    coalescer = CoalescingEmbedder(embedder, max_in_flight=1)
    first = await held(embedder, coalescer)
    tasks = [ask(coalescer, "kelp", ACME), ask(coalescer, "reef", GLOBEX)]
    tasks += [ask(coalescer, "dunes", ACME), ask(coalescer, "shoal", GLOBEX)]
    await asyncio.sleep(0)
    embedder.gate.set()
    await asyncio.gather(first, *tasks)
    by_caller = {(tuple(texts), caller.tenant) for texts, caller, _ in embedder.calls}
    assert by_caller == {
        (("first",), "acme"),
        (("reef", "shoal"), "globex"),
        (("kelp", "dunes"), "acme"),
    }


async def test_a_shared_call_runs_until_the_latest_deadline_among_its_questions():
    embedder = GatedEmbedder()
    coalescer = CoalescingEmbedder(embedder, max_in_flight=1)
    first = await held(embedder, coalescer)
    hasty = ask(coalescer, "kelp", deadline_s=0.05)
    patient = ask(coalescer, "dunes", deadline_s=30)
    await asyncio.sleep(0)
    embedder.gate.set()
    await first
    (_, _, shared_deadline) = embedder.calls[1]
    assert shared_deadline == pytest.approx(time.monotonic() + 30, abs=1)
    assert await patient == [5.0]
    # Each question's own deadline is the engine's to enforce (a cut-off question is a
    # cancelled one here: see the cancellation test).
    assert await hasty == [4.0]


async def test_a_question_cancelled_before_its_call_is_not_sent_and_others_are_unaffected():
    embedder = GatedEmbedder()
    coalescer = CoalescingEmbedder(embedder, max_in_flight=1)
    first = await held(embedder, coalescer)
    gone, staying = ask(coalescer, "kelp"), ask(coalescer, "dunes")
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.sleep(0)
    embedder.gate.set()
    await first
    assert await staying == [5.0]
    assert gone.cancelled()
    assert [texts for texts, _, _ in embedder.calls] == [["first"], ["dunes"]]


async def test_one_question_s_invalid_text_fails_it_alone_and_a_dependency_failure_fails_all():
    embedder = GatedEmbedder()
    coalescer = CoalescingEmbedder(embedder, max_in_flight=1)
    first = await held(embedder, coalescer)
    bad, good = ask(coalescer, "bad"), ask(coalescer, "kelp")
    await asyncio.sleep(0)
    embedder.gate.set()
    await first
    assert await good == [4.0]
    with pytest.raises(InvalidArgument):
        await bad
    embedder.down = True
    first = await held(embedder, coalescer)
    others = [ask(coalescer, "kelp"), ask(coalescer, "dunes")]
    await asyncio.sleep(0)
    embedder.gate.set()
    for task in (first, *others):
        with pytest.raises(Unavailable):
            await task


async def test_a_question_goes_at_once_while_fewer_than_max_in_flight_calls_are_out():
    embedder = GatedEmbedder()
    coalescer = CoalescingEmbedder(embedder, max_in_flight=2)
    first = await held(embedder, coalescer)
    second = ask(coalescer, "kelp")
    for _ in range(3):
        await asyncio.sleep(0)
    assert [texts for texts, _, _ in embedder.calls] == [["first"], ["kelp"]]
    queued = [ask(coalescer, text) for text in ("dunes", "glaciers")]
    for _ in range(3):
        await asyncio.sleep(0)
    assert len(embedder.calls) == 2  # two out: the rest wait for one to return
    embedder.gate.set()
    await asyncio.gather(first, second, *queued)
    assert [texts for texts, _, _ in embedder.calls][2:] == [["dunes", "glaciers"]]


async def test_documents_and_batches_pass_straight_through():
    embedder = GatedEmbedder()
    coalescer = CoalescingEmbedder(embedder)
    assert await coalescer.embed(["a", "bb"], "document") == [[1.0], [2.0]]
    assert await coalescer.embed(["a", "bb"], "query") == [[1.0], [2.0]]
    assert [texts for texts, _, _ in embedder.calls] == [["a", "bb"], ["a", "bb"]]
