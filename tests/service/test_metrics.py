"""Each process's /metrics as scraped, and its health signals as operators read them."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import urllib.request

import grpc
import pytest

from rag.v1 import embedding_service_pb2 as pb
from rag.v1 import embedding_service_pb2_grpc as pb_grpc
from rag.v1 import generation_service_pb2 as gen_pb
from rag.v1 import generation_service_pb2_grpc as gen_grpc
from rag.v1 import health_details_service_pb2 as health_pb
from rag.v1 import health_details_service_pb2_grpc as health_grpc
from rag_cli.commands import health as health_command
from rag_cli.launcher import free_port
from rag_common.settings import ServiceSettings
from rag_embedding.servicer import EmbeddingServicer, servicers
from rag_generation.models import Generation
from rag_generation.servicer import servicers as generation_servicers
from tests.conftest import collect, start_host
from tests.support.signed import TEST_KEY, signed_channel


def scrape(port: int) -> dict[str, float]:
    """Every sample line of /metrics, by name and labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            samples[key] = float(value)
    return samples


async def test_calls_show_up_by_method_and_code(embedder):
    port = free_port()
    settings = ServiceSettings(port=0, grace_period_s=1.0, metrics_port=port)
    host = await start_host(servicers(embedder), settings, name="embedding")
    method = "/rag.v1.EmbeddingService/Embed"
    labels = f'method="{method}",service="embedding"'
    try:
        async with signed_channel(f"127.0.0.1:{host.port}", "embedding") as channel:
            stub = pb_grpc.EmbeddingServiceStub(channel)
            await stub.Embed(pb.EmbedRequest(texts=["metrics"]))
            try:
                await stub.Embed(pb.EmbedRequest(texts=[]))
            except grpc.aio.AioRpcError:
                pass
        await asyncio.sleep(0)
        samples = await asyncio.to_thread(scrape, port)
        count = 'rag_request_duration_seconds_count{{code="{}",{}}}'
        assert samples[count.format("OK", labels)] == 1
        assert samples[count.format("INVALID_ARGUMENT", labels)] == 1
        assert samples[f"rag_requests_in_flight{{{labels}}}"] == 0
    finally:
        await host.stop(0)


async def test_a_signal_past_its_threshold_shows_in_health_details_and_rag_health(
    embedder, capsys, monkeypatch, tmp_path
):
    # Thresholds low enough that ordinary calls cross them: latency over 1 µs is "slow".
    settings = ServiceSettings(
        port=0, grace_period_s=1.0, health_min_calls=3, health_p95_warning_s=1e-6
    )
    host = await start_host(servicers(embedder), settings, name="embedding")
    address = f"127.0.0.1:{host.port}"
    try:
        async with signed_channel(address, "embedding") as channel:
            stub = pb_grpc.EmbeddingServiceStub(channel)
            for number in range(3):
                await stub.Embed(pb.EmbedRequest(texts=[f"signal {number}"]))
            details = await health_grpc.HealthDetailsServiceStub(channel).GetHealthDetails(
                health_pb.GetHealthDetailsRequest()
            )
        signals = {s.name: s for s in details.signals}
        assert details.state == health_pb.HEALTH_STATE_DEGRADED
        assert signals["p95_latency_s"].state == health_pb.HEALTH_STATE_DEGRADED
        assert signals["p95_latency_s"].detail == "3 calls"
        assert signals["error_rate"].state == health_pb.HEALTH_STATE_HEALTHY
        capsys.readouterr()
        # `rag health` signs as an operator with the suite's key: the details are not public.
        monkeypatch.setenv("RAG_IDENTITY_KEY", TEST_KEY)
        await health_command.health(
            argparse.Namespace(service=[["embedding", address]], data_dir=tmp_path, api_key="")
        )
        printed = capsys.readouterr().out
        row = next(line for line in printed.splitlines() if "p95_latency_s" in line)
        # The three Embed calls and the details call above: a call with a credential, too.
        assert "degraded" in row and "4 calls" in row
    finally:
        await host.stop(0)


async def test_a_call_its_handler_aborted_is_counted_as_ended(embedder):
    """A handler that ends its call with `context.abort` (as grpc's own examples do) leaves
    no call "in flight" in the gauge the autoscaler reads."""

    class Aborting(EmbeddingServicer):
        async def Embed(self, request, context):
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "not today")

    port = free_port()
    settings = ServiceSettings(port=0, grace_period_s=1.0, metrics_port=port)
    [servicer] = servicers(embedder)
    aborting = dataclasses.replace(servicer, implementation=Aborting(embedder))
    host = await start_host([aborting], settings, name="embedding")
    try:
        async with signed_channel(f"127.0.0.1:{host.port}", "embedding") as channel:
            for _ in range(3):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await pb_grpc.EmbeddingServiceStub(channel).Embed(pb.EmbedRequest(texts=["x"]))
                assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        samples = await asyncio.to_thread(scrape, port)
        labels = 'method="/rag.v1.EmbeddingService/Embed",service="embedding"'
        assert samples[f"rag_requests_in_flight{{{labels}}}"] == 0
    finally:
        await host.stop(0)


async def test_a_batch_call_counts_each_question_in_flight_until_it_ends():
    """The autoscaler reads calls in flight: a GenerateBatch of three answers is three
    questions being served, not one, so batching under load hides no work from it."""

    class HeldGenerator:
        """Answers once `gate` opens."""

        def __init__(self) -> None:
            self.gate = asyncio.Event()

        async def generate(self, request):
            await self.gate.wait()
            return Generation(f"about {request.question}", "fake", 0)

    generator = HeldGenerator()
    port = free_port()
    settings = ServiceSettings(port=0, grace_period_s=1.0, metrics_port=port)
    host = await start_host(generation_servicers(generator), settings, name="generation")
    labels = 'method="/rag.v1.GenerationService/GenerateBatch",service="generation"'
    items = [gen_pb.GenerateBatchItem(input=gen_pb.GenerationInput(question=q)) for q in "abc"]
    try:
        async with signed_channel(f"127.0.0.1:{host.port}", "generation") as channel:
            call = gen_grpc.GenerationServiceStub(channel).GenerateBatch(
                gen_pb.GenerateBatchRequest(items=items), timeout=10
            )
            reading = asyncio.ensure_future(collect(call))
            for _ in range(100):
                samples = await asyncio.to_thread(scrape, port)
                if samples.get(f"rag_requests_in_flight{{{labels}}}"):
                    break
            assert samples[f"rag_requests_in_flight{{{labels}}}"] == 3
            generator.gate.set()
            answers = [o.response.text for m in await reading for o in m.outcomes]
            assert sorted(answers) == ["about a", "about b", "about c"]
        await asyncio.sleep(0)
        samples = await asyncio.to_thread(scrape, port)
        assert samples[f"rag_requests_in_flight{{{labels}}}"] == 0
    finally:
        await host.stop(0)
