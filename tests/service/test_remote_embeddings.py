"""The embedding service in front of a remote embedding server (OpenAI-compatible or TEI):
its batching and cache stay, a failing server is retried then shunned, and a caller's bad
texts count against nothing."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from rag.v1 import embedding_service_pb2 as pb
from rag.v1 import embedding_service_pb2_grpc as pb_grpc
from rag_common.errors import InvalidArgument, Unavailable
from rag_embedding.__main__ import build_embedder
from rag_embedding.config import EmbeddingSettings
from rag_embedding.servicer import servicers
from tests.conftest import start_host
from tests.support.fake_embeddings import DIMENSION, MODEL, FakeEmbeddingServer, vector
from tests.support.signed import signed_channel


@pytest.fixture(scope="module")
def server():
    fake = FakeEmbeddingServer().start()
    yield fake
    fake.stop()


async def remote(server, backend: str, **settings):
    server.reset()
    model = {"model": "text-embedding-3-small"} if backend == "openai" else {}
    embedder = build_embedder(
        EmbeddingSettings(
            backend=backend, remote_url=server.url, **model, cache_entries=1000, **settings
        )
    )
    await embedder.start()
    server.reset()
    return embedder


@pytest.mark.parametrize("backend", ["openai", "tei"])
async def test_a_remote_server_embeds_through_the_services_own_port(server, backend):
    embedder = await remote(server, backend)
    host = await start_host(servicers(embedder))
    try:
        async with signed_channel(f"127.0.0.1:{host.port}", "embedding") as channel:
            stub = pb_grpc.EmbeddingServiceStub(channel)
            info = await stub.GetModelInfo(pb.GetModelInfoRequest())
            assert info.dimension == DIMENSION
            assert info.model == (MODEL if backend == "tei" else "text-embedding-3-small")
            reply = await stub.Embed(pb.EmbedRequest(texts=["kiln shelves", "glaze"]))
    finally:
        await host.stop(0)
        await embedder.close()
    vectors = np.array([list(e.values) for e in reply.embeddings])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)  # normalised here
    expected = np.array(vector("kiln shelves"))
    assert np.allclose(vectors[0], expected / np.linalg.norm(expected), atol=1e-6)


async def test_concurrent_callers_share_the_servers_calls_and_repeats_come_from_the_cache(
    server,
):
    embedder = await remote(server, "openai")
    try:
        texts = [[f"question number {n}"] for n in range(24)]
        await asyncio.gather(*(embedder.embed(t, "query") for t in texts))
        calls = len(server.requests)
        assert calls < 24  # batched
        await asyncio.gather(*(embedder.embed(t, "query") for t in texts))
        assert len(server.requests) == calls  # every one from the cache
    finally:
        await embedder.close()


async def test_a_server_that_fails_for_a_moment_is_retried_until_it_answers(server):
    embedder = await remote(server, "tei")
    try:
        server.reset("ok", "error500", "ratelimit")
        [v] = await embedder.embed(["retried text"], "document")
        assert len(server.requests) == 3 and math.isclose(np.linalg.norm(v), 1.0)
    finally:
        await embedder.close()


async def test_a_hung_server_costs_its_timeout_then_its_breaker_refuses_at_once(server):
    embedder = await remote(server, "openai", remote_timeout_s=0.2, remote_attempts=2)
    server.hang_s = 1.0
    try:
        server.reset("hang")
        for n in range(5):  # five failures in a row open the breaker (its default policy)
            with pytest.raises(Unavailable) as failed:
                await embedder.embed([f"hung {n}"], "query")
            assert failed.value.reason == "EMBEDDING_SERVER_FAILED"
        reached = len(server.requests)
        with pytest.raises(Unavailable):
            await embedder.embed(["refused at once"], "query")
        assert len(server.requests) == reached  # refused without asking the server
    finally:
        await embedder.close()


async def test_texts_the_server_refuses_are_the_callers_and_open_no_breaker(server):
    embedder = await remote(server, "openai")
    try:
        server.reset("badrequest")
        for n in range(6):
            with pytest.raises(InvalidArgument):
                await embedder.embed([f"too long {n}"], "query")
        server.reset("ok")
        assert await embedder.embed(["fine again"], "query")
    finally:
        await embedder.close()


async def test_a_reply_in_no_embedding_format_is_the_servers_failure(server):
    embedder = await remote(server, "tei", remote_attempts=1)
    try:
        server.reset("malformed")
        with pytest.raises(Unavailable) as failed:
            await embedder.embed(["odd reply"], "query")
        assert failed.value.reason == "EMBEDDING_SERVER_FAILED"
    finally:
        await embedder.close()


def test_a_remote_backend_without_a_server_is_refused_at_start():
    with pytest.raises(ValueError, match="RAG_EMBEDDING_REMOTE_URL"):
        EmbeddingSettings(backend="tei")
    with pytest.raises(ValueError, match="RAG_EMBEDDING_MODEL"):
        EmbeddingSettings(backend="openai", remote_url="http://127.0.0.1:1")
