"""Concurrent whole answers of one caller share a GenerateBatch call; each is handed back the
moment it is written and keeps its own result, error, deadline and cancellation, and no call
mixes callers. A replica without the batch call gets one call an answer."""

from __future__ import annotations

import asyncio
import time

import pytest

from rag_common import context
from rag_common.errors import InvalidArgument, Unavailable, Unimplemented
from rag_common.security.identity import Identity
from rag_query.coalescing import CoalescingGenerator
from rag_query.models import GeneratedText, QueryOptions
from tests.support.turns import until

ACME = Identity("app", "acme", frozenset({"reader"}))
GLOBEX = Identity("app", "globex", frozenset({"reader"}))


def written(question: str, identity: Identity) -> GeneratedText:
    """What the fake provider writes: the caller's tenant and the question."""
    return GeneratedText(text=f"{identity.tenant}: {question}", provider="fake")


class GatedGeneration:
    """Records each call (kind, questions, caller, the drafts' deadlines); holds calls while
    its gate is shut, and an answer to "slow..." until `slow_gate` opens. "bad" is invalid;
    `broken_after` ends a batch call with UNAVAILABLE after that many answers; with `old`,
    it has no GenerateBatch. `stopped` counts calls cancelled while they ran."""

    def __init__(self, *, old: bool = False) -> None:
        self.calls: list[tuple[str, list[str], Identity, list[float | None]]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.slow_gate = asyncio.Event()
        self.slow_gate.set()
        self.old = old
        self.broken_after: int | None = None
        self.stopped = 0

    async def generate(self, question, sources, options, identity):
        self.calls.append(("Generate", [question], identity, [context.deadline()]))
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.stopped += 1
            raise
        return self._one(question, identity)

    def stream(self, question, sources, options, identity):
        raise AssertionError("not asked here")

    async def generate_batch(self, drafts, identity):
        questions = [d.question for d in drafts]
        self.calls.append(("GenerateBatch", questions, identity, [d.deadline for d in drafts]))
        await self.gate.wait()
        if self.old:
            raise Unimplemented("generation failed: unimplemented")
        order = sorted(range(len(drafts)), key=lambda i: questions[i].startswith("slow"))
        for sent, index in enumerate(order):
            if sent == self.broken_after:
                raise Unavailable("generation is down", reason="DEPENDENCY_UNAVAILABLE")
            if questions[index].startswith("slow"):
                try:
                    await self.slow_gate.wait()
                except asyncio.CancelledError:
                    self.stopped += 1
                    raise
            try:
                yield index, self._one(questions[index], identity)
            except InvalidArgument as exc:
                yield index, exc

    def _one(self, question, identity):
        if question == "bad":
            raise InvalidArgument("question", "must not be empty")
        return written(question, identity)


def ask(generator, question: str, identity: Identity = ACME, deadline_s: float | None = None):
    """An answer as the engine asks for it: in the question's own task, with its deadline."""

    async def answer():
        deadline = None if deadline_s is None else time.monotonic() + deadline_s
        context.enter(context.RequestScope(f"request-{question}", deadline))
        context.set_identity(identity)
        return await generator.generate(question, [], QueryOptions(), identity)

    return asyncio.ensure_future(answer())


async def held(generation: GatedGeneration, generator, identity: Identity = ACME):
    """A first answer in flight, held at the gate."""
    generation.gate.clear()
    sent = len(generation.calls)
    task = ask(generator, "first", identity)
    await until(lambda: len(generation.calls) > sent)
    assert generation.calls[-1][:3] == ("Generate", ["first"], identity)
    return task


async def sent_together(generation: GatedGeneration, generator, *questions, slow_held=False):
    """Answers asked while a first one is held, so they go in one call; with `slow_held`,
    that call holds its "slow..." answers until `slow_gate` opens."""
    first = await held(generation, generator)
    waiting = [ask(generator, q) for q in questions]
    await asyncio.sleep(0)
    if slow_held:
        generation.slow_gate.clear()
    generation.gate.set()
    await first
    return waiting


async def settle(*tasks):
    return await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_lone_answer_goes_at_once_in_a_generate_call_of_its_own():
    generation = GatedGeneration()
    generator = CoalescingGenerator(generation)
    assert await ask(generator, "tides") == written("tides", ACME)
    assert generation.calls == [("Generate", ["tides"], ACME, [None])]


async def test_answers_waiting_during_a_call_go_together_each_with_its_own_text():
    generation = GatedGeneration()
    generator = CoalescingGenerator(generation, max_in_flight=1)
    first = await held(generation, generator)
    waiting = [ask(generator, q) for q in ("kelp", "dunes", "glaciers")]
    await asyncio.sleep(0)
    generation.gate.set()
    assert await first == written("first", ACME)
    assert await settle(*waiting) == [written(q, ACME) for q in ("kelp", "dunes", "glaciers")]
    assert [c[:2] for c in generation.calls] == [
        ("Generate", ["first"]),
        ("GenerateBatch", ["kelp", "dunes", "glaciers"]),
    ]
    assert generator.calls == 2


async def test_a_quick_answer_is_handed_back_while_a_slow_one_of_its_call_is_written():
    generation = GatedGeneration()
    generator = CoalescingGenerator(generation, max_in_flight=1)
    slow, quick = await sent_together(generation, generator, "slow", "kelp", slow_held=True)
    assert await asyncio.wait_for(quick, 1) == written("kelp", ACME)
    assert not slow.done()
    generation.slow_gate.set()
    assert await slow == written("slow", ACME)


async def test_two_callers_answers_never_share_a_call():
    generation = GatedGeneration()
    generator = CoalescingGenerator(generation, max_in_flight=1)
    firsts = [await held(generation, generator, ACME), await held(generation, generator, GLOBEX)]
    mixed = [ask(generator, "kelp", ACME), ask(generator, "kelp", GLOBEX)]
    mixed += [ask(generator, "dunes", ACME), ask(generator, "dunes", GLOBEX)]
    await asyncio.sleep(0)
    generation.gate.set()
    await settle(*firsts)
    results = await settle(*mixed)
    assert [r.text for r in results] == [
        "acme: kelp",
        "globex: kelp",
        "acme: dunes",
        "globex: dunes",
    ]
    batches = {
        (tuple(q), caller.tenant) for kind, q, caller, _ in generation.calls if kind != "Generate"
    }
    assert batches == {(("kelp", "dunes"), "acme"), (("kelp", "dunes"), "globex")}


async def test_one_answer_s_error_fails_it_alone_and_a_broken_call_fails_only_the_unanswered():
    generation = GatedGeneration()
    generator = CoalescingGenerator(generation, max_in_flight=1)
    bad, good = await sent_together(generation, generator, "bad", "kelp")
    assert await good == written("kelp", ACME)
    with pytest.raises(InvalidArgument, match="question"):
        await bad
    generation.broken_after = 1
    answered, cut_off = await sent_together(generation, generator, "dunes", "glaciers")
    assert await answered == written("dunes", ACME)
    with pytest.raises(Unavailable):
        await cut_off


async def test_an_answer_cancelled_before_its_call_is_not_sent_and_others_are_unaffected():
    generation = GatedGeneration()
    generator = CoalescingGenerator(generation, max_in_flight=1)
    first = await held(generation, generator)
    gone, staying = ask(generator, "kelp"), ask(generator, "dunes")
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.sleep(0)
    generation.gate.set()
    await first
    assert await staying == written("dunes", ACME)
    assert gone.cancelled()
    assert [c[1] for c in generation.calls] == [["first"], ["dunes"]]


async def test_an_answer_whose_caller_left_stops_being_written_once_nobody_reads_the_call():
    generation = GatedGeneration()
    generator = CoalescingGenerator(generation, max_in_flight=1)
    slow, quick = await sent_together(generation, generator, "slow", "kelp", slow_held=True)
    assert await asyncio.wait_for(quick, 1) == written("kelp", ACME)
    assert generation.stopped == 0  # the slow answer still has its caller
    slow.cancel()
    await settle(slow)
    await until(lambda: generation.stopped == 1)  # the call stopped writing it
    # A lone answer's own call stops with its caller too.
    lone = await held(generation, generator)
    lone.cancel()
    await settle(lone)
    await until(lambda: generation.stopped == 2)
    generation.gate.set()
    assert await ask(generator, "dunes") == written("dunes", ACME)


async def test_a_call_goes_on_for_the_answers_still_read_when_one_caller_leaves():
    generation = GatedGeneration()
    generator = CoalescingGenerator(generation, max_in_flight=1)
    gone, staying = await sent_together(
        generation, generator, "slow-kelp", "slow-dunes", slow_held=True
    )
    await until(lambda: len(generation.calls) == 2)
    gone.cancel()
    await settle(gone)
    generation.slow_gate.set()
    assert await asyncio.wait_for(staying, 1) == written("slow-dunes", ACME)
    assert generation.stopped == 0 and generation.calls[1][1] == ["slow-kelp", "slow-dunes"]


async def test_each_answer_of_a_shared_call_carries_its_own_deadline():
    generation = GatedGeneration()
    generator = CoalescingGenerator(generation, max_in_flight=1)
    first = await held(generation, generator)
    hasty = ask(generator, "kelp", deadline_s=0.5)
    patient = ask(generator, "dunes", deadline_s=30)
    unhurried = ask(generator, "glaciers")
    await asyncio.sleep(0)
    generation.gate.set()
    await first
    await settle(hasty, patient, unhurried)
    (_, questions, _, deadlines) = generation.calls[1]
    assert questions == ["kelp", "dunes", "glaciers"]
    now = time.monotonic()
    assert deadlines[0] == pytest.approx(now + 0.5, abs=0.4)
    assert deadlines[1] == pytest.approx(now + 30, abs=1)
    assert deadlines[2] is None


async def test_an_older_replica_without_the_batch_call_gets_one_call_an_answer_from_then_on():
    generation = GatedGeneration(old=True)
    generator = CoalescingGenerator(generation, max_in_flight=1)
    for round_ in range(2):
        waiting = await sent_together(generation, generator, f"kelp-{round_}", f"dunes-{round_}")
        assert await settle(*waiting) == [written(f"{q}-{round_}", ACME) for q in ("kelp", "dunes")]
    kinds = [kind for kind, *_ in generation.calls]
    # One batch refused, then every answer alone: the first round's and the second's.
    assert kinds == ["Generate", "GenerateBatch", "Generate", "Generate"] + ["Generate"] * 3
