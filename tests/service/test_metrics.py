"""Each process's /metrics: calls in flight and latency by method and code, as scraped."""

from __future__ import annotations

import asyncio
import urllib.request

import grpc

from rag.v1 import embedding_service_pb2 as pb
from rag.v1 import embedding_service_pb2_grpc as pb_grpc
from rag_cli.launcher import free_port
from rag_common.settings import ServiceSettings
from rag_embedding.servicer import servicers
from tests.conftest import start_host
from tests.support.signed import signed_channel


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
