"""Concurrent searches of one caller share a RetrieveBatch call; each keeps its own result,
error, deadline and cancellation, and no call mixes callers. A replica without the batch
call gets one call a search."""

from __future__ import annotations

import asyncio
import time

import pytest

from rag_common import context
from rag_common.domain import ScoredChunk
from rag_common.errors import InvalidArgument, Unavailable, Unimplemented
from rag_common.security.identity import Identity
from rag_query.coalescing import CoalescingRetriever
from rag_query.models import QueryOptions, RetrievedContext
from tests.support.turns import until

ACME = Identity("app", "acme", frozenset({"reader"}))
GLOBEX = Identity("app", "globex", frozenset({"reader"}))


def found(question: str, identity: Identity) -> RetrievedContext:
    """What the fake store holds for a question: one chunk naming both."""
    chunk = ScoredChunk(f"{identity.tenant}/{question}", 0, 1.0, question)
    return RetrievedContext([chunk], ())


class GatedRetrieval:
    """Records each call (kind, questions, caller, deadline); holds calls while its gate is
    shut. A search for "bad" is invalid; with `old`, it has no RetrieveBatch."""

    def __init__(self, *, old: bool = False) -> None:
        self.calls: list[tuple[str, list[str], Identity, float | None]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.old = old
        self.down = False

    async def retrieve(self, question, vector, options, identity):
        self.calls.append(("Retrieve", [question], identity, context.deadline()))
        await self.gate.wait()
        return self._one(question, identity)

    async def retrieve_batch(self, searches, identity):
        questions = [s.question for s in searches]
        self.calls.append(("RetrieveBatch", questions, identity, context.deadline()))
        await self.gate.wait()
        if self.old:
            raise Unimplemented("retrieval failed: unimplemented")
        outcomes = []
        for question in questions:
            try:
                outcomes.append(self._one(question, identity))
            except InvalidArgument as exc:
                outcomes.append(exc)
        return outcomes

    def _one(self, question, identity):
        if self.down:
            raise Unavailable("retrieval is down", reason="DEPENDENCY_UNAVAILABLE")
        if question == "bad":
            raise InvalidArgument("filters[0].key", "no such key")
        return found(question, identity)


def ask(retriever, question: str, identity: Identity = ACME, deadline_s: float | None = None):
    """A search as the engine asks for it: in the question's own task, with its deadline."""

    async def search():
        deadline = None if deadline_s is None else time.monotonic() + deadline_s
        context.enter(context.RequestScope(f"request-{question}", deadline))
        context.set_identity(identity)
        return await retriever.retrieve(question, [0.1, 0.2], QueryOptions(), identity)

    return asyncio.ensure_future(search())


async def held(retrieval: GatedRetrieval, retriever, identity: Identity = ACME):
    """A first search in flight, held at the gate."""
    retrieval.gate.clear()
    sent = len(retrieval.calls)
    task = ask(retriever, "first", identity)
    await until(lambda: len(retrieval.calls) > sent)
    assert retrieval.calls[-1][:3] == ("Retrieve", ["first"], identity)
    return task


async def settle(*tasks):
    return await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_lone_search_goes_at_once_in_a_retrieve_call_of_its_own():
    retrieval = GatedRetrieval()
    retriever = CoalescingRetriever(retrieval)
    assert await ask(retriever, "tides") == found("tides", ACME)
    assert retrieval.calls == [("Retrieve", ["tides"], ACME, None)]


async def test_searches_waiting_during_a_call_go_together_each_with_its_own_chunks():
    retrieval = GatedRetrieval()
    retriever = CoalescingRetriever(retrieval, max_in_flight=1)
    first = await held(retrieval, retriever)
    waiting = [ask(retriever, q) for q in ("kelp", "dunes", "glaciers")]
    await asyncio.sleep(0)
    retrieval.gate.set()
    assert await first == found("first", ACME)
    assert await settle(*waiting) == [found(q, ACME) for q in ("kelp", "dunes", "glaciers")]
    assert [c[:2] for c in retrieval.calls] == [
        ("Retrieve", ["first"]),
        ("RetrieveBatch", ["kelp", "dunes", "glaciers"]),
    ]
    assert retriever.calls == 2


async def test_two_callers_searches_never_share_a_call():
    retrieval = GatedRetrieval()
    retriever = CoalescingRetriever(retrieval, max_in_flight=1)
    firsts = [await held(retrieval, retriever, ACME), await held(retrieval, retriever, GLOBEX)]
    mixed = [ask(retriever, "kelp", ACME), ask(retriever, "kelp", GLOBEX)]
    mixed += [ask(retriever, "dunes", ACME), ask(retriever, "dunes", GLOBEX)]
    await asyncio.sleep(0)
    retrieval.gate.set()
    await settle(*firsts)
    results = await settle(*mixed)
    assert [r.chunks[0].document_id for r in results] == [
        "acme/kelp",
        "globex/kelp",
        "acme/dunes",
        "globex/dunes",
    ]
    batches = {
        (tuple(q), caller.tenant) for kind, q, caller, _ in retrieval.calls if kind != "Retrieve"
    }
    assert batches == {(("kelp", "dunes"), "acme"), (("kelp", "dunes"), "globex")}


async def test_one_search_s_error_fails_it_alone_and_a_dependency_failure_fails_all():
    retrieval = GatedRetrieval()
    retriever = CoalescingRetriever(retrieval, max_in_flight=1)
    first = await held(retrieval, retriever)
    bad, good = ask(retriever, "bad"), ask(retriever, "kelp")
    await asyncio.sleep(0)
    retrieval.gate.set()
    await first
    assert await good == found("kelp", ACME)
    with pytest.raises(InvalidArgument, match="filters"):
        await bad
    retrieval.down = True
    first = await held(retrieval, retriever)
    others = [ask(retriever, "kelp"), ask(retriever, "dunes")]
    await asyncio.sleep(0)
    retrieval.gate.set()
    outcomes = await settle(first, *others)
    assert all(isinstance(o, Unavailable) for o in outcomes)


async def test_a_search_cancelled_before_its_call_is_not_sent_and_others_are_unaffected():
    retrieval = GatedRetrieval()
    retriever = CoalescingRetriever(retrieval, max_in_flight=1)
    first = await held(retrieval, retriever)
    gone, staying = ask(retriever, "kelp"), ask(retriever, "dunes")
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.sleep(0)
    retrieval.gate.set()
    await first
    assert await staying == found("dunes", ACME)
    assert gone.cancelled()
    assert [c[1] for c in retrieval.calls] == [["first"], ["dunes"]]


async def test_a_shared_call_runs_until_the_latest_deadline_among_its_searches():
    retrieval = GatedRetrieval()
    retriever = CoalescingRetriever(retrieval, max_in_flight=1)
    first = await held(retrieval, retriever)
    hasty = ask(retriever, "kelp", deadline_s=0.05)
    patient = ask(retriever, "dunes", deadline_s=30)
    await asyncio.sleep(0)
    retrieval.gate.set()
    await first
    assert await settle(hasty, patient) == [found("kelp", ACME), found("dunes", ACME)]
    (_, _, _, shared_deadline) = retrieval.calls[1]
    assert shared_deadline == pytest.approx(time.monotonic() + 30, abs=1)


async def test_an_older_replica_without_the_batch_call_gets_one_call_a_search_from_then_on():
    retrieval = GatedRetrieval(old=True)
    retriever = CoalescingRetriever(retrieval, max_in_flight=1)
    for round_ in range(2):
        first = await held(retrieval, retriever)
        waiting = [ask(retriever, f"{q}-{round_}") for q in ("kelp", "dunes")]
        await asyncio.sleep(0)
        retrieval.gate.set()
        await first
        assert await settle(*waiting) == [found(f"{q}-{round_}", ACME) for q in ("kelp", "dunes")]
    kinds = [kind for kind, *_ in retrieval.calls]
    # One batch refused, then every search alone: the first round's and the second's.
    assert kinds == ["Retrieve", "RetrieveBatch", "Retrieve", "Retrieve"] + ["Retrieve"] * 3
