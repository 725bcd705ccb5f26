"""EmbeddingService on a real gRPC server with the real model."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rag.v1 import embedding_service_pb2 as pb
from rag.v1 import embedding_service_pb2_grpc as pb_grpc
from rag_embedding.servicer import servicers
from tests.conftest import start_host
from tests.support.signed import credentials, signed_channel

INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture(scope="module")
async def stub(embedder):
    host = await start_host(servicers(embedder))
    channel = signed_channel(f"127.0.0.1:{host.port}", "embedding")
    yield pb_grpc.EmbeddingServiceStub(channel)
    await channel.close()
    await host.stop(0)


async def test_vectors_are_normalised_and_closer_for_related_texts(stub):
    reply = await stub.Embed(
        pb.EmbedRequest(
            texts=[
                "How do I reset my password?",
                "Steps to change a forgotten password",
                "The recipe needs two eggs and flour",
            ],
            purpose=pb.EMBEDDING_PURPOSE_DOCUMENT,
        )
    )
    vectors = np.array([list(e.values) for e in reply.embeddings])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    related, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert related > unrelated + 0.3


async def test_model_info_describes_the_packaged_model(stub):
    info = await stub.GetModelInfo(pb.GetModelInfoRequest())
    assert info.dimension == 384
    assert "MiniLM" in info.model
    assert info.max_texts == 256


@pytest.mark.parametrize(
    ("texts", "field"),
    [
        ([], "texts"),
        (["fine", "   "], "texts[1]"),
        (["fine", "x" * 8193], "texts[1]"),
        (["t"] * 257, "texts"),
    ],
)
async def test_bad_batches_are_rejected_naming_the_field(stub, expect_error, texts, field):
    await expect_error(stub.Embed(pb.EmbedRequest(texts=texts)), INVALID, "INVALID_ARGUMENT", field)


async def test_not_serving_and_unavailable_until_the_model_is_loaded(expect_error):
    from rag_common.server.host import ServiceHost
    from rag_common.settings import ServiceSettings
    from rag_embedding.__main__ import build_embedder
    from rag_embedding.config import EmbeddingSettings

    loading = build_embedder(EmbeddingSettings())  # start() not called: model not loaded
    host = ServiceHost(
        ServiceSettings(port=0),
        servicers(loading),
        resolve_identity=credentials("embedding").resolver(),
    )
    await host.start()
    async with signed_channel(f"127.0.0.1:{host.port}", "embedding") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service="rag.v1.EmbeddingService"))
        assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
        embed = pb_grpc.EmbeddingServiceStub(channel).Embed(pb.EmbedRequest(texts=["hi"]))
        await expect_error(embed, grpc.StatusCode.UNAVAILABLE, "NOT_READY")
    await host.stop(0)
    await loading.close()
