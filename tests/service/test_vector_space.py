"""The store remembers which embedding model made its vectors: after the embedding service
changes model, writes and searches are refused naming both models, and nothing mixes."""

from __future__ import annotations

import grpc
import pytest

from rag.v1 import common_pb2
from rag.v1 import retrieval_service_pb2 as retrieval_pb
from rag.v1 import retrieval_service_pb2_grpc as retrieval_grpc
from rag_cli.backup import reindex
from rag_common.breaker import BreakerState
from rag_common.domain import DocumentInput
from rag_common.errors import FailedPrecondition, Unavailable
from rag_common.security.identity import Identity
from rag_embedding.__main__ import build_embedder
from rag_embedding.config import EmbeddingSettings
from rag_retrieval.__main__ import build_retriever, build_store
from rag_retrieval.config import RetrievalSettings
from rag_retrieval.models import RetrieveQuery
from tests.support.fake_embeddings import FakeEmbeddingServer
from tests.support.signed import credentials
from tests.support.suite import internal_services, upsert_directly

ACME = Identity("p", "acme", frozenset({"writer", "reader"}))
NOTE = DocumentInput("kiln", "Never fire the kiln above 1300 degrees.")


async def started(settings: RetrievalSettings, embedder):
    retriever = build_retriever(settings, embedder, build_store(settings))
    await retriever.start()
    return retriever


async def stored(retriever, document=NOTE) -> None:
    async for _ in retriever.upsert([document], ACME):
        pass


@pytest.mark.parametrize("dimension", [384, 8])  # same size, other model; another size
async def test_a_store_made_by_one_model_refuses_another_and_takes_the_first_back(
    embedder, tmp_path, dimension
):
    settings = RetrievalSettings(data_dir=tmp_path)
    first = await started(settings, embedder)
    await stored(first)
    await first.close()

    server = FakeEmbeddingServer(dimension).start()
    other = build_embedder(EmbeddingSettings(backend="tei", remote_url=server.url))
    await other.start()
    second = await started(settings, other)
    try:
        for _ in range(6):  # refused every time, and never taken for a failing store
            with pytest.raises(FailedPrecondition) as write:
                await stored(second, DocumentInput("glaze", "Glazes melt near 1200 degrees."))
        assert write.value.reason == "EMBEDDING_MODEL_MISMATCH"
        assert second.store_breaker.state is BreakerState.CLOSED
        assert "MiniLM" in write.value.message and "fake/embedder-8" in write.value.message
        with pytest.raises(FailedPrecondition):
            await second.retrieve(RetrieveQuery(text="kiln temperature"), ACME)
        assert await second.count(ACME) == 1  # nothing of the refused write
    finally:
        await second.close()
        await other.close()
        server.stop()

    again = await started(settings, embedder)  # the model put back: all as before
    try:
        found = await again.retrieve(RetrieveQuery(text="kiln temperature"), ACME)
        assert found.chunks[0].document_id == "kiln"
    finally:
        await again.close()


async def test_a_rebuild_moves_the_store_to_the_new_model_and_refuses_searches_meanwhile(
    embedder, tmp_path
):
    settings = RetrievalSettings(data_dir=tmp_path)
    first = await started(settings, embedder)
    await stored(first)
    await stored(first, DocumentInput("glaze", "Glazes melt near 1200 degrees in the kiln."))
    await first.close()

    server = FakeEmbeddingServer(384).start()  # another model, of the same dimension
    other = build_embedder(EmbeddingSettings(backend="tei", remote_url=server.url))
    await other.start()
    rebuilt = await started(settings, other)
    try:
        rebuilt.vector_space.rebuilding = True  # as while `rag reindex` runs
        with pytest.raises(Unavailable) as meanwhile:
            await rebuilt.retrieve(RetrieveQuery(text="kiln"), ACME)
        assert meanwhile.value.reason == "REINDEXING"
        rebuilt.vector_space.rebuilding = False

        chunks, space = await rebuilt.reindex()
        assert (chunks, space.model, space.dimension) == (2, "fake/embedder-8", 384)
        found = await rebuilt.retrieve(RetrieveQuery(text="fire the kiln above 1300"), ACME)
        assert found.chunks[0].document_id == "kiln"  # searched with the new model's vectors
        await stored(rebuilt, DocumentInput("shelf", "Shelves stand on three posts."))
    finally:
        await rebuilt.close()
        await other.close()
        server.stop()

    old = await started(settings, embedder)  # the old model is now the other one
    try:
        with pytest.raises(FailedPrecondition) as refused:
            await old.retrieve(RetrieveQuery(text="kiln"), ACME)
        assert "fake/embedder-8" in refused.value.message
    finally:
        await old.close()


async def test_rag_reindex_is_an_operators_call_on_retrievals_port(embedder, tmp_path):
    async with internal_services(embedder, tmp_path) as internal:
        address = internal.addresses["retrieval"]
        note = common_pb2.Document(id="kiln", text=NOTE.text)
        await upsert_directly(address, credentials("query"), ACME, [note])
        reply = await reindex(address, "", 60.0, credentials("cli"))
        assert reply.chunks == 1 and "MiniLM" in reply.model and reply.dimension == 384
        writer = credentials("query").metadata(
            "retrieval", ACME, method="/rag.v1.RetrievalService/Reindex"
        )
        async with grpc.aio.insecure_channel(address) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await retrieval_grpc.RetrievalServiceStub(channel).Reindex(
                    retrieval_pb.ReindexRequest(), metadata=writer, timeout=30
                )
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
