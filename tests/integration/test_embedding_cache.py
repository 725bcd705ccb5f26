"""The embedding cache: computed once per model, purpose, tenant and text, shared through
Redis."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from rag_common import context
from rag_common.security.identity import Identity
from rag_embedding.__main__ import build_embedder
from rag_embedding.config import EmbeddingSettings
from tests.support.redis_servers import RedisServer


async def test_a_repeated_text_is_not_encoded_again(embedder):
    first = await embedder.embed(["the cache keeps this sentence"], "document")
    batches = embedder.batches
    again = await embedder.embed(
        ["the cache keeps this sentence", "and encodes this one"], "document"
    )
    assert embedder.batches == batches + 1  # only the new text was encoded
    assert np.allclose(again[0], first[0], atol=1e-6)
    # The purpose is part of the key: a query embedding is its own entry.
    await embedder.embed(["the cache keeps this sentence"], "query")
    assert embedder.batches == batches + 2


@pytest.fixture
async def replicas(tmp_path):
    server = RedisServer(tmp_path).start()
    settings = EmbeddingSettings(redis_url=server.url)
    first, second = build_embedder(settings), build_embedder(settings)
    for replica in (first, second):
        await replica.start()
    yield first, second
    for replica in (first, second):
        await replica.close()
        await replica.cache.remote.close()
    server.stop()


async def test_a_vector_computed_by_one_replica_is_reused_by_another(replicas):
    first, second = replicas
    texts = [f"shared sentence number {i}" for i in range(40)]
    computed = await first.embed(texts, "document")
    before = second.batches
    reused = await second.embed(texts, "document")
    assert second.batches == before  # nothing encoded: one Redis round trip
    assert second.cache.counts["remote_hit"] >= 40
    assert np.allclose(np.array(reused), np.array(computed), atol=1e-6)


async def test_one_tenant_never_hits_the_vector_another_tenant_asked_for(embedder):
    # A hit answers in a millisecond and a miss in tens: shared across tenants, the
    # timings every answer returns would tell one tenant what another one asked.
    question = "Is the acquisition of Initech going ahead?"
    with as_tenant("globex"):
        await embedder.embed([question], "query")
    batches = embedder.batches
    with as_tenant("acme"):
        await embedder.embed([question], "query")
    assert embedder.batches == batches + 1  # acme's own miss, encoded for acme
    with as_tenant("acme"):
        await embedder.embed([question], "query")
    assert embedder.batches == batches + 1  # and from then on acme's own hit


@contextlib.contextmanager
def as_tenant(tenant: str):
    context.set_identity(Identity("someone", tenant, frozenset({"reader"})))
    try:
        yield
    finally:
        context.set_identity(None)
