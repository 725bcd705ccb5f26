"""GenerateBatch at the servicer: each answer is sent the moment it is written, under its own
time limit, with its own outcome; a batch in which every answer failed as the service does
fails as a whole, as one Generate would, so the caller's breaker sees it."""

from __future__ import annotations

import asyncio

import pytest

from rag.v1 import generation_service_pb2 as pb
from rag_common import status
from rag_common.errors import DeadlineExceeded, InvalidArgument, Unavailable
from rag_generation.batch import MAX_BATCH_ANSWERS
from rag_generation.models import Generation, Usage
from rag_generation.servicer import GenerationServicer


class FakeGenerator:
    """Echoes the question; "bad" is invalid; "slow" waits for `slow_gate`; "hang" never
    ends; with `down`, every provider is down."""

    def __init__(self, down: bool = False) -> None:
        self.down = down
        self.slow_gate = asyncio.Event()

    async def generate(self, request):
        if request.question == "bad":
            raise InvalidArgument("question", "must not be empty")
        if self.down:
            raise Unavailable("every provider failed", reason="PROVIDERS_UNAVAILABLE")
        if request.question == "slow":
            await self.slow_gate.wait()
        if request.question == "hang":
            await asyncio.Event().wait()
        return Generation(f"about {request.question}", "fake", 0, usage=Usage(1, 1, 0.0))


def batch(*questions: str, timeout_ms: int = 0) -> pb.GenerateBatchRequest:
    return pb.GenerateBatchRequest(
        items=[
            pb.GenerateBatchItem(input=pb.GenerationInput(question=q), timeout_ms=timeout_ms)
            for q in questions
        ]
    )


def by_index(messages) -> dict[int, pb.GenerateOutcome]:
    return {o.index: o for m in messages for o in m.outcomes}


async def test_each_answer_ends_in_its_own_outcome():
    servicer = GenerationServicer(FakeGenerator())
    messages = [m async for m in servicer.GenerateBatch(batch("tides", "bad", "kelp"), None)]
    outcomes = by_index(messages)
    assert outcomes[0].response.text == "about tides"
    assert outcomes[2].response.text == "about kelp"
    error = status.from_bytes(outcomes[1].error, dependency="generation")
    assert isinstance(error, InvalidArgument) and error.field == "question"


async def test_a_quick_answer_is_sent_before_a_slow_one_is_written():
    generator = FakeGenerator()
    replies = GenerationServicer(generator).GenerateBatch(batch("slow", "kelp"), None)
    first = await asyncio.wait_for(anext(replies), 1)
    assert [(o.index, o.response.text) for o in first.outcomes] == [(1, "about kelp")]
    generator.slow_gate.set()
    second = await anext(replies)
    assert [(o.index, o.response.text) for o in second.outcomes] == [(0, "about slow")]


async def test_an_answer_past_its_own_time_limit_fails_alone():
    servicer = GenerationServicer(FakeGenerator())
    request = batch("hang", "kelp", timeout_ms=50)
    messages = await asyncio.wait_for(_all(servicer.GenerateBatch(request, None)), 2)
    outcomes = by_index(messages)
    assert outcomes[1].response.text == "about kelp"
    error = status.from_bytes(outcomes[0].error, dependency="generation")
    assert isinstance(error, DeadlineExceeded)


async def test_a_batch_whose_every_answer_failed_as_the_service_fails_as_a_whole():
    servicer = GenerationServicer(FakeGenerator(down=True))
    with pytest.raises(Unavailable):
        await _all(servicer.GenerateBatch(batch("tides", "kelp"), None))
    # Callers' own mistakes are theirs: a batch of them is answered, each with its error.
    outcomes = by_index(await _all(servicer.GenerateBatch(batch("bad", "bad"), None)))
    assert sorted(outcomes) == [0, 1] and all(o.HasField("error") for o in outcomes.values())


@pytest.mark.parametrize("size", [0, MAX_BATCH_ANSWERS + 1])
async def test_a_batch_of_no_answers_or_too_many_is_refused_naming_the_field(size):
    servicer = GenerationServicer(FakeGenerator())
    with pytest.raises(InvalidArgument) as refused:
        await _all(servicer.GenerateBatch(batch(*["kelp"] * size), None))
    assert refused.value.field == "items"


async def _all(replies) -> list[pb.GenerateBatchResponse]:
    return [m async for m in replies]
