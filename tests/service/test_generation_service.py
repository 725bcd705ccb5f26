"""GenerationService on a real gRPC server with the real local model (llama.cpp + SmolLM2)."""

from __future__ import annotations

import shutil
import time

import grpc
import pytest

from rag.v1 import common_pb2
from rag.v1 import generation_service_pb2 as pb
from rag.v1 import generation_service_pb2_grpc as pb_grpc
from rag_cli.launcher import free_port
from rag_common import status
from rag_common.breaker import BreakerState
from rag_common.domain import ScoredChunk
from rag_common.errors import InvalidArgument
from rag_common.security.identity import Identity
from rag_generation.__main__ import build_generator
from rag_generation.adapters.llama_local import packaged_model_path, requantized
from rag_generation.batch import MAX_BATCH_ANSWERS
from rag_generation.config import GenerationSettings
from rag_generation.pace import Pace
from rag_generation.servicer import servicers
from rag_query.adapters.generation_client import GenerationClient
from rag_query.models import Draft, QueryOptions
from tests.conftest import collect, start_host
from tests.support.signed import credentials, signed_channel

SOURCES = [
    common_pb2.Source(
        document_id="fr",
        text="Paris is the capital of France. The river Seine flows through Paris.",
    ),
    common_pb2.Source(document_id="de", text="Berlin is the capital of Germany."),
]


async def serve(settings: GenerationSettings):
    generator = build_generator(settings)
    await generator.start()
    host = await start_host(servicers(generator))
    channel = signed_channel(f"127.0.0.1:{host.port}", "generation")
    return generator, host, channel


@pytest.fixture(scope="module")
async def served():
    generator, host, channel = await serve(GenerationSettings(providers=["local", "extractive"]))
    yield generator, pb_grpc.GenerationServiceStub(channel)
    await channel.close()
    await host.stop(0)
    await generator.close()


@pytest.fixture(scope="module")
def stub(served):
    return served[1]


@pytest.fixture
def local_model(served):
    """The local model, whose pace a test may set as if measured; put back after."""
    model = next(route.model for route in served[0].routes if route.name == "local")
    measured = model.pace
    yield model
    model.pace = measured


def question(text: str, **fields) -> pb.GenerationInput:
    return pb.GenerationInput(question=text, sources=SOURCES, **fields)


async def test_local_model_writes_an_answer(stub):
    reply = await stub.Generate(
        pb.GenerateRequest(input=question("What is the capital of France?", max_tokens=24))
    )
    assert reply.provider == "local"
    assert len(reply.text.split()) >= 2
    assert reply.sources_used == 2


async def test_the_local_model_s_pace_is_measured_at_start(local_model):
    assert local_model.pace.read_per_s > local_model.pace.write_per_s > 1


async def test_a_local_model_too_slow_for_the_time_left_declines_and_extractive_answers(
    served, local_model
):
    # At this pace even a short answer takes 4.8 s: with 3 s left, it is not tried at all,
    # and declining is not a failure of the model (its breaker stays closed).
    local_model.pace = Pace(read_per_s=100, write_per_s=10)
    generator, stub = served
    for _ in range(4):
        reply = await stub.Generate(
            pb.GenerateRequest(input=question("What is the capital of Germany?")), timeout=3
        )
        assert reply.provider == "extractive"
        assert list(reply.failed_providers) == ["local"]
    assert generator.breaker_states()["local"] == "closed"


async def test_the_local_model_reads_the_sources_it_has_time_for_and_caps_its_answer(
    stub, local_model
):
    local_model.pace = Pace(read_per_s=100, write_per_s=10)
    long_text = " ".join(
        f"Harbour {n} keeps its boats in a sheltered basin behind a stone wall." for n in range(40)
    )
    sources = [common_pb2.Source(document_id=f"harbour-{i}", text=long_text) for i in range(4)]
    request = pb.GenerationInput(
        question="Where do the harbours keep their boats?", sources=sources, max_tokens=256
    )
    reply = await stub.Generate(pb.GenerateRequest(input=request), timeout=20)
    # 19.5 s for the local model: 15.6 s planned; 4.8 s kept for 48 tokens of answer leaves
    # 1,080 tokens to read, one source of about 600; the rest of the time writes the answer.
    assert reply.provider == "local"
    assert reply.sources_used == 1
    written = (15.6 - reply.usage.input_tokens / 100) * 10
    assert reply.usage.output_tokens <= written


async def test_extractive_provider_quotes_the_best_sentence_with_its_citation(stub):
    reply = await stub.Generate(
        pb.GenerateRequest(input=question("Which river is in Paris?", provider="extractive"))
    )
    assert reply.provider == "extractive"
    assert reply.text.startswith("The river Seine flows through Paris. [1]")


async def test_stream_sends_pieces_then_a_summary_of_the_same_text(stub):
    messages = await collect(
        stub.StreamGenerate(
            pb.StreamGenerateRequest(input=question("Capital of Germany?", max_tokens=16))
        )
    )
    deltas = [m.delta for m in messages if m.HasField("delta")]
    assert len(deltas) >= 2
    assert messages[-1].HasField("done")
    assert messages[-1].done.text == "".join(deltas)
    assert messages[-1].done.provider == "local"


async def test_a_batch_answers_each_item_on_its_own_and_refuses_a_bad_one_alone(stub, expect_error):
    items = [
        pb.GenerateBatchItem(input=question("Which river is in Paris?", provider="extractive")),
        pb.GenerateBatchItem(input=pb.GenerationInput(question="")),
        pb.GenerateBatchItem(
            input=question("Capital of Germany?", provider="extractive"), timeout_ms=5000
        ),
    ]
    messages = await collect(stub.GenerateBatch(pb.GenerateBatchRequest(items=items)))
    outcomes = {o.index: o for m in messages for o in m.outcomes}
    assert outcomes[0].response.text.startswith("The river Seine flows through Paris. [1]")
    assert outcomes[2].response.text.startswith("Berlin is the capital of Germany. [2]")
    error = status.from_bytes(outcomes[1].error, dependency="generation")
    assert isinstance(error, InvalidArgument) and error.field == "input.question"
    too_many = pb.GenerateBatchRequest(items=items[:1] * (MAX_BATCH_ANSWERS + 1))
    await expect_error(
        stub.GenerateBatch(too_many), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "items"
    )


async def test_a_stream_goes_to_another_replica_when_the_first_is_down_before_sending(served):
    """A replica that refuses the connection (killed, restarting) sent nothing: the stream
    and the batch go to the live one instead of failing the question."""
    live = served[0]
    host = await start_host(servicers(live))
    client = GenerationClient(
        f"127.0.0.1:{free_port()},127.0.0.1:{host.port}",
        timeout_s=30,
        credentials=credentials("query"),
    )
    reader = Identity("app", "acme", frozenset({"reader"}))
    options = QueryOptions(provider="extractive")
    sources = [ScoredChunk("fr", 0, 1.0, SOURCES[0].text)]
    drafts = [Draft("Which river is in Paris?", sources, options, None)] * 2
    try:
        for _ in range(4):  # calls take turns: half of them pick the dead replica first
            pieces = [p async for p in client.stream(drafts[0].question, sources, options, reader)]
            assert pieces[-1].text.startswith("The river Seine")
            answers = [pair async for pair in client.generate_batch(drafts, reader)]
            assert sorted(index for index, _ in answers) == [0, 1]
            assert all(a.text.startswith("The river Seine") for _, a in answers)
        assert client.breaker.state is BreakerState.CLOSED
    finally:
        await client.close()
        await host.stop(0)


async def test_each_answer_of_a_batch_reaches_the_service_with_its_own_question_s_deadline(
    served, local_model
):
    """The client turns each draft's deadline into its item's time limit: at this pace a
    short local answer takes 4.8 s, so the draft with 3 s left is answered by extractive
    and the one under the call's own 30 s by the local model."""
    local_model.pace = Pace(read_per_s=100, write_per_s=10)
    host = await start_host(servicers(served[0]))
    client = GenerationClient(
        f"127.0.0.1:{host.port}", timeout_s=30, credentials=credentials("query")
    )
    sources = [ScoredChunk("de", 0, 1.0, SOURCES[1].text)]
    hasty = Draft("Capital of Germany?", sources, QueryOptions(), time.monotonic() + 3)
    patient = Draft("Capital of Germany?", sources, QueryOptions(), None)
    reader = Identity("app", "acme", frozenset({"reader"}))
    try:
        answers = dict([pair async for pair in client.generate_batch([hasty, patient], reader)])
    finally:
        await client.close()
        await host.stop(0)
    assert answers[0].provider == "extractive" and answers[0].failed_providers == ("local",)
    assert answers[1].provider == "local" and not answers[1].failed_providers


async def test_extractive_answers_when_the_local_model_cannot_load():
    settings = GenerationSettings(
        providers=["local", "extractive"], local_model_path="/nonexistent/model.gguf"
    )
    generator, host, channel = await serve(settings)
    try:
        reply = await pb_grpc.GenerationServiceStub(channel).Generate(
            pb.GenerateRequest(input=question("What is the capital of Germany?"))
        )
        assert reply.provider == "extractive"
        assert "Berlin is the capital of Germany. [2]" in reply.text
    finally:
        await channel.close()
        await host.stop(0)
        await generator.close()


def test_the_packaged_model_is_re_encoded_once_and_kept(tmp_path):
    from llama_cpp import LLAMA_FTYPE_MOSTLY_Q8_0, Llama

    source = packaged_model_path()
    made = requantized(source, "q8_0", tmp_path)
    written = made.stat().st_mtime_ns
    assert requantized(source, "q8_0", tmp_path) == made  # a later start takes the kept file
    assert made.stat().st_mtime_ns == written
    llama = Llama(model_path=str(made), n_ctx=256, verbose=False)
    try:
        assert llama.metadata["general.file_type"] == str(LLAMA_FTYPE_MOSTLY_Q8_0)
    finally:
        llama.close()
    # A cache folder that cannot be made (under a file): made in a temporary folder instead.
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    elsewhere = requantized(source, "q8_0", blocker / "cache")
    assert elsewhere.is_file() and tmp_path not in elsewhere.parents
    shutil.rmtree(elsewhere.parent)


@pytest.mark.parametrize(
    ("generation_input", "field"),
    [
        (pb.GenerationInput(question=""), "input.question"),
        (pb.GenerationInput(question="x" * 4001), "input.question"),
        (pb.GenerationInput(question="q", max_tokens=5000), "input.max_tokens"),
        (pb.GenerationInput(question="q", provider="gpt-17"), "input.provider"),
    ],
)
async def test_bad_input_is_rejected_naming_the_field(stub, expect_error, generation_input, field):
    await expect_error(
        stub.Generate(pb.GenerateRequest(input=generation_input)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        field,
    )
    await expect_error(
        collect(stub.StreamGenerate(pb.StreamGenerateRequest(input=generation_input))),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        field,
    )


async def test_a_stream_broken_mid_answer_sends_the_partial_text_then_unavailable(expect_error):
    from tests.support.fake_llm import FakeLLMServer

    fake = FakeLLMServer().start()
    fake.reset("break_stream")
    settings = GenerationSettings(
        providers=[
            {"name": "remote", "kind": "openai", "model": "m", "base_url": f"{fake.url}/v1"},
            "extractive",
        ]
    )
    generator, host, channel = await serve(settings)
    messages = []
    try:

        async def consume():
            call = pb_grpc.GenerationServiceStub(channel).StreamGenerate(
                pb.StreamGenerateRequest(input=question("Capital of France?"))
            )
            async for message in call:
                messages.append(message)

        await expect_error(consume(), grpc.StatusCode.UNAVAILABLE, "STREAM_INTERRUPTED")
        assert [m.delta for m in messages if m.HasField("delta")] == ["Paris", " is"]
        assert messages[-1].done.partial and messages[-1].done.text == "Paris is"
    finally:
        await channel.close()
        await host.stop(0)
        await generator.close()
        fake.stop()
