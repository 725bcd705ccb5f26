"""The store remembers which embedding model made its vectors: after the embedding service
changes model, writes and searches are refused naming both models, and nothing mixes."""

from __future__ import annotations

import pytest

from rag_common.domain import DocumentInput
from rag_common.errors import FailedPrecondition
from rag_common.security.identity import Identity
from rag_embedding.__main__ import build_embedder
from rag_embedding.config import EmbeddingSettings
from rag_retrieval.__main__ import build_retriever, build_store
from rag_retrieval.config import RetrievalSettings
from rag_retrieval.models import RetrieveQuery
from tests.support.fake_embeddings import FakeEmbeddingServer

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
        with pytest.raises(FailedPrecondition) as write:
            await stored(second, DocumentInput("glaze", "Glazes melt near 1200 degrees."))
        assert write.value.reason == "EMBEDDING_MODEL_MISMATCH"
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
