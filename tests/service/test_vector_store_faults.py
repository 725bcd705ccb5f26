"""RetrievalService when its vector store fails: clear UNAVAILABLE, breaker, recovery."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from rag.v1 import common_pb2
from rag.v1 import retrieval_service_pb2 as pb
from rag.v1 import retrieval_service_pb2_grpc as pb_grpc
from rag_common.breaker import BreakerPolicy, CircuitBreaker
from rag_common.client.embedding import EmbeddingClient
from rag_common.errors import Unavailable
from rag_common.security.identity import Identity
from rag_embedding.servicer import servicers as embedding_servicers
from rag_retrieval.adapters.edge_store import EdgeStore
from rag_retrieval.backups import Backups
from rag_retrieval.retriever import Retriever
from rag_retrieval.servicer import servicers
from tests.conftest import collect, start_host
from tests.support.signed import Signed, credentials, signed_channel

ACME = Signed("retrieval", Identity("alice", "acme", frozenset({"writer"})))


class FailingStore:
    """The real qdrant-edge store, which can be told to fail like a broken disk would."""

    def __init__(self, store: EdgeStore) -> None:
        self._store = store
        self.broken = False
        self.broken_methods: set[str] = set()  # fail only these, as a crash between two would
        self.calls = 0

    def __getattr__(self, name):
        method = getattr(self._store, name)

        async def call(*args, **kwargs):
            self.calls += 1
            if self.broken or name in self.broken_methods:
                raise Unavailable("the vector store failed", reason="VECTOR_STORE_FAILED")
            return await method(*args, **kwargs)

        return call


@pytest.fixture(scope="module")
async def stack(embedder, tmp_path_factory):
    embedding_host = await start_host(embedding_servicers(embedder))
    embedding = EmbeddingClient(
        f"127.0.0.1:{embedding_host.port}", timeout_s=30, credentials=credentials("retrieval")
    )
    store = FailingStore(EdgeStore(tmp_path_factory.mktemp("faults"), 384))
    retriever = Retriever(
        store,
        embedding,
        vector_size=384,
        chunk_size=800,
        chunk_overlap=100,
        max_document_chars=10_000,
        max_documents_per_call=10,
        default_top_k=5,
        max_top_k=10,
        store_breaker=CircuitBreaker(
            "vector_store", BreakerPolicy(consecutive_failures=3, recovery_s=0.5)
        ),
    )
    await retriever.start()
    backups = Backups(store, tmp_path_factory.mktemp("scratch"), 10**9)
    host = await start_host(servicers(retriever, backups))
    channel = signed_channel(f"127.0.0.1:{host.port}", "retrieval")
    stub = pb_grpc.RetrievalServiceStub(channel)
    await collect(
        stub.UpsertDocuments(
            pb.UpsertDocumentsRequest(documents=[common_pb2.Document(id="d", text="Owls hunt.")]),
            metadata=ACME,
        )
    )
    yield stub, store, retriever
    await channel.close()
    await host.stop(0)
    await retriever.close()
    await embedding.close()
    await embedding_host.stop(0)


async def test_a_failing_store_is_unavailable_then_paused_then_recovers(stack, expect_error):
    stub, store, retriever = stack
    request = pb.RetrieveRequest(query="owls")
    store.broken = True
    for _ in range(3):
        await expect_error(
            stub.Retrieve(request, metadata=ACME),
            grpc.StatusCode.UNAVAILABLE,
            "VECTOR_STORE_FAILED",
        )
    calls = store.calls
    # The breaker is open: calls fail at once without touching the store.
    await expect_error(
        stub.Retrieve(request, metadata=ACME), grpc.StatusCode.UNAVAILABLE, "CIRCUIT_OPEN"
    )
    assert store.calls == calls
    assert retriever.store_breaker.state.value == "open"
    store.broken = False
    await asyncio.sleep(0.6)  # past the recovery time: the next call probes the store
    reply = await stub.Retrieve(request, metadata=ACME)
    assert reply.chunks[0].document_id == "d"
    assert retriever.store_breaker.state.value == "closed"


async def test_a_failing_store_loses_no_document_on_ingest(stack, expect_error):
    stub, store, _retriever = stack
    store.broken = True
    call = stub.UpsertDocuments(
        pb.UpsertDocumentsRequest(documents=[common_pb2.Document(id="e", text="Bats fly.")]),
        metadata=ACME,
    )
    await expect_error(call, grpc.StatusCode.UNAVAILABLE)
    store.broken = False
    await asyncio.sleep(0.6)
    reply = await stub.Retrieve(pb.RetrieveRequest(query="owls"), metadata=ACME)
    assert [c.document_id for c in reply.chunks] == ["d"]  # the earlier document is intact


async def test_a_replacement_cut_off_before_its_tail_is_removed_reads_as_the_new_version(
    stack, expect_error
):
    stub, store, _retriever = stack
    sentences = " ".join(f"The old atlas covers region {n} in depth." for n in range(80))
    atlas = common_pb2.Document(id="atlas", text=sentences, metadata={"doc": "atlas"})
    [reply] = await collect(
        stub.UpsertDocuments(pb.UpsertDocumentsRequest(documents=[atlas]), metadata=ACME)
    )
    old_chunks = reply.results[0].chunks
    assert old_chunks > 2
    # The new, one-chunk version is written, then the store fails before the old chunks
    # past it are removed: what a crash between the two writes leaves on disk.
    store.broken_methods = {"delete"}
    atlas.text = "The new atlas is one page."
    call = stub.UpsertDocuments(pb.UpsertDocumentsRequest(documents=[atlas]), metadata=ACME)
    await expect_error(call, grpc.StatusCode.UNAVAILABLE)
    store.broken_methods = set()
    atlas_only = [
        common_pb2.FilterCondition(
            key="doc", operator=common_pb2.FILTER_OPERATOR_EQUALS, values=["atlas"]
        )
    ]
    assert await store.count("acme", "atlas") == old_chunks  # the old tail is still there
    request = pb.RetrieveRequest(query="atlas region", top_k=10, filters=atlas_only)
    reply = await stub.Retrieve(request, metadata=ACME)
    assert [c.text for c in reply.chunks] == ["The new atlas is one page."]
    # ...and that search removed the leftovers: the document is whole again on disk.
    assert await store.count("acme", "atlas") == 1
