"""Unexpected failures reach callers as INTERNAL "internal error", never as a traceback."""

from __future__ import annotations

import grpc
import pytest

from rag.v1 import embedding_service_pb2 as pb
from rag.v1 import embedding_service_pb2_grpc as pb_grpc
from rag_cli.launcher import free_port
from rag_common.client.embedding import EmbeddingClient
from rag_common.errors import Unavailable
from rag_embedding.embedder import Embedder
from rag_embedding.servicer import servicers
from tests.conftest import start_host
from tests.support.signed import credentials, signed_channel


class ExplodingModel:
    name = "exploding"
    dimension = 3
    max_sequence_length = 8

    def encode(self, texts, purpose):
        if all(text.startswith("warm-up") for text in texts):  # the start-up encodes
            return [[1.0, 0.0, 0.0] for _ in texts]
        raise RuntimeError("secret /var/lib/model path and a stack frame")


@pytest.fixture(scope="module")
async def address():
    embedder = Embedder(ExplodingModel, max_texts=4, max_text_chars=100)
    await embedder.start()
    host = await start_host(servicers(embedder))
    yield f"127.0.0.1:{host.port}"
    await host.stop(0)


async def test_an_unexpected_exception_is_internal_without_details(address, expect_error):
    async with signed_channel(address, "embedding") as channel:
        call = pb_grpc.EmbeddingServiceStub(channel).Embed(pb.EmbedRequest(texts=["hi"]))
        error = await expect_error(call, grpc.StatusCode.INTERNAL, "INTERNAL")
    assert error.details() == "internal error"


async def test_a_dead_dependency_becomes_unavailable_naming_it():

    client = EmbeddingClient(
        f"127.0.0.1:{free_port()}", timeout_s=2, credentials=credentials("query")
    )
    with pytest.raises(Unavailable) as caught:
        await client.embed(["hello"], "query")
    assert caught.value.metadata["dependency"] == "embedding"
    await client.close()
