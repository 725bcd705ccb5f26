"""RetrievalService on a real gRPC server: real model, real Qdrant engine (qdrant-edge)."""

from __future__ import annotations

import grpc
import pytest

from rag.v1 import common_pb2
from rag.v1 import retrieval_service_pb2 as pb
from rag.v1 import retrieval_service_pb2_grpc as pb_grpc
from rag_common import status
from rag_common.client.embedding import EmbeddingClient
from rag_common.errors import InvalidArgument
from rag_common.security.identity import Identity
from rag_embedding.servicer import servicers as embedding_servicers
from rag_retrieval.__main__ import build_retriever, build_store
from rag_retrieval.backups import Backups
from rag_retrieval.config import RetrievalSettings
from rag_retrieval.servicer import servicers
from tests.conftest import collect, start_host
from tests.support.signed import Signed, credentials, signed_channel

INVALID = grpc.StatusCode.INVALID_ARGUMENT


async def upsert(stub, request, metadata) -> list[pb.DocumentResult]:
    """Every document result of one UpsertDocuments stream."""
    return [
        r
        for m in await collect(stub.UpsertDocuments(request, metadata=metadata))
        for r in m.results
    ]


ACME = Signed("retrieval", Identity("alice", "acme", frozenset({"writer"})))
GLOBEX = Signed("retrieval", Identity("bob", "globex", frozenset({"writer"})))
OPERATOR = Signed("retrieval", Identity("ops", "", frozenset({"operator"})))


def doc(id: str, text: str, **metadata: str) -> common_pb2.Document:
    return common_pb2.Document(id=id, text=text, title=id, metadata=metadata)


class Stack:
    """Embedding and retrieval servers, and a way to restart retrieval on the same folder."""

    def __init__(self, embedder, data_dir, **settings) -> None:
        self.embedder = embedder
        self.settings = RetrievalSettings(
            data_dir=data_dir, chunk_size=200, chunk_overlap=40, **settings
        )

    async def start(self) -> None:
        self.embedding_host = await start_host(embedding_servicers(self.embedder))
        self.embedding = EmbeddingClient(
            f"127.0.0.1:{self.embedding_host.port}",
            timeout_s=30,
            credentials=credentials("retrieval"),
        )
        await self.start_retrieval()

    async def start_retrieval(self) -> None:
        store = build_store(self.settings)
        self.retriever = build_retriever(self.settings, self.embedding, store)
        await self.retriever.start()
        backups = Backups(store, self.settings.data_dir / "tmp", self.settings.max_restore_bytes)
        self.host = await start_host(servicers(self.retriever, backups))
        self.channel = signed_channel(f"127.0.0.1:{self.host.port}", "retrieval")
        self.stub = pb_grpc.RetrievalServiceStub(self.channel)

    async def stop_retrieval(self) -> None:
        await self.channel.close()
        await self.host.stop(0)
        await self.retriever.close()

    async def chunks(self, tenant: str) -> int:
        return await self.retriever.count(Identity("t", tenant, frozenset()))


@pytest.fixture(scope="module")
async def stack(embedder, tmp_path_factory):
    stack = Stack(embedder, tmp_path_factory.mktemp("retrieval"))
    await stack.start()
    yield stack
    await stack.stop_retrieval()
    await stack.embedding.close()
    await stack.embedding_host.stop(0)


async def ask(stack: Stack, question: str, metadata=ACME, **fields) -> list[common_pb2.Source]:
    reply = await stack.stub.Retrieve(
        pb.RetrieveRequest(query=question, **fields), metadata=metadata
    )
    return list(reply.chunks)


async def test_upsert_then_retrieve_finds_the_relevant_document(stack):
    await upsert(
        stack.stub,
        pb.UpsertDocumentsRequest(
            documents=[
                doc("volcano", "Volcanoes erupt when magma rises through the crust.", lang="en"),
                doc("bread", "Knead the dough for ten minutes before letting it rise.", lang="en"),
                doc(
                    "vulkan",
                    "Vulkane brechen aus, wenn Magma durch die Kruste aufsteigt.",
                    lang="de",
                ),
            ]
        ),
        metadata=ACME,
    )
    hits = await ask(stack, "Why do volcanoes erupt?", top_k=2)
    assert hits[0].document_id == "volcano"
    assert hits[0].score > hits[1].score
    assert hits[0].metadata["lang"] == "en"


async def test_metadata_filters_narrow_the_search(stack):
    def condition(op, *values):
        return common_pb2.FilterCondition(key="lang", operator=op, values=values)

    german = await ask(
        stack, "volcano", filters=[condition(common_pb2.FILTER_OPERATOR_EQUALS, "de")]
    )
    assert {h.document_id for h in german} == {"vulkan"}
    not_german = await ask(
        stack, "volcano", filters=[condition(common_pb2.FILTER_OPERATOR_NOT_IN, "de")]
    )
    assert {h.document_id for h in not_german} == {"volcano", "bread"}


async def test_score_threshold_drops_weak_matches(stack):
    hits = await ask(stack, "Why do volcanoes erupt?", score_threshold=0.5)
    assert [h.document_id for h in hits] == ["volcano"]


async def test_tenants_never_see_each_other(stack):
    await upsert(
        stack.stub,
        pb.UpsertDocumentsRequest(documents=[doc("volcano", "Globex sells garden hoses.")]),
        metadata=GLOBEX,
    )
    globex_hits = await ask(stack, "Why do volcanoes erupt?", metadata=GLOBEX)
    assert [h.text for h in globex_hits] == ["Globex sells garden hoses."]
    # A filter on a metadata key named like the tenant field cannot widen the search.
    widened = await ask(
        stack,
        "volcano",
        metadata=GLOBEX,
        filters=[
            common_pb2.FilterCondition(
                key="tenant", operator=common_pb2.FILTER_OPERATOR_IN, values=["acme", "globex"]
            )
        ],
    )
    assert widened == []
    acme_hits = await ask(stack, "garden hoses")
    assert all("Globex" not in h.text for h in acme_hits)


async def test_a_batch_answers_each_search_alone_inside_the_caller_s_tenant(stack, expect_error):
    """After the two tenants' documents above: one RetrieveBatch of three searches, one of
    them invalid, for each tenant."""
    searches = [
        pb.RetrieveRequest(query="Why do volcanoes erupt?", top_k=1),
        pb.RetrieveRequest(query="garden hoses", top_k=5),
        pb.RetrieveRequest(query="volcano", top_k=1000),
    ]
    request = pb.RetrieveBatchRequest(searches=searches)
    acme = (await stack.stub.RetrieveBatch(request, metadata=ACME)).outcomes
    globex = (await stack.stub.RetrieveBatch(request, metadata=GLOBEX)).outcomes
    assert [c.document_id for c in acme[0].response.chunks] == ["volcano"]
    assert "magma" in acme[0].response.chunks[0].text
    assert all("Globex" not in c.text for c in acme[1].response.chunks)
    assert [c.text for c in globex[1].response.chunks] == ["Globex sells garden hoses."]
    for outcomes in (acme, globex):
        error = status.from_bytes(outcomes[2].error, dependency="retrieval")
        assert isinstance(error, InvalidArgument) and error.field == "top_k"
    # The same searches one call each give the same chunks.
    assert list(acme[0].response.chunks) == await ask(stack, "Why do volcanoes erupt?", top_k=1)
    empty = stack.stub.RetrieveBatch(pb.RetrieveBatchRequest(), metadata=ACME)
    await expect_error(empty, INVALID, "INVALID_ARGUMENT", "searches")
    unsigned = stack.stub.RetrieveBatch(request)
    await expect_error(unsigned, grpc.StatusCode.PERMISSION_DENIED, "ROLE_REQUIRED")


async def test_reingesting_a_shorter_document_removes_its_stale_chunks(stack):
    long_text = " ".join(f"Sentence number {i} about the long manual." for i in range(60))
    first = await upsert(
        stack.stub, pb.UpsertDocumentsRequest(documents=[doc("manual", long_text)]), metadata=ACME
    )
    assert first[0].chunks > 3
    before = await stack.chunks("acme")
    second = await upsert(
        stack.stub,
        pb.UpsertDocumentsRequest(documents=[doc("manual", "The manual is now one line.")]),
        metadata=ACME,
    )
    assert second[0].chunks == 1
    assert await stack.chunks("acme") == before - first[0].chunks + 1
    hits = await ask(stack, "long manual sentence number", top_k=10)
    assert [h.text for h in hits if h.document_id == "manual"] == ["The manual is now one line."]


async def test_delete_removes_every_chunk_of_the_document(stack):
    await upsert(
        stack.stub,
        pb.UpsertDocumentsRequest(documents=[doc("temp", "A temporary note about tulips.")]),
        metadata=ACME,
    )
    reply = await stack.stub.DeleteDocuments(
        pb.RetrievalServiceDeleteDocumentsRequest(document_ids=["temp", "never-existed"]),
        metadata=ACME,
    )
    assert reply.deleted_chunks == 1
    assert all(h.document_id != "temp" for h in await ask(stack, "tulips"))


async def test_documents_survive_a_restart(stack):
    count = await stack.chunks("acme")
    await stack.stop_retrieval()
    await stack.start_retrieval()
    assert await stack.chunks("acme") == count
    assert (await ask(stack, "Why do volcanoes erupt?"))[0].document_id == "volcano"


@pytest.mark.parametrize(
    ("documents", "field"),
    [
        ([], "documents"),
        ([doc("ok", "fine"), doc("empty", "   ")], "documents[1].text"),
        ([doc("big", "x" * 1_000_001)], "documents[0].text"),
        ([doc("bad id!", "text")], "documents[0].id"),
        ([doc("", "text")], "documents[0].id"),
        ([doc("twice", "a"), doc("twice", "b")], "documents[1].id"),
        (
            [common_pb2.Document(id="ok", text="t", metadata={"bad key!": "v"})],
            "documents[0].metadata.bad key!",
        ),
    ],
)
async def test_bad_documents_are_rejected_and_nothing_is_stored(
    stack, expect_error, documents, field
):
    before = await stack.chunks("acme")
    call = stack.stub.UpsertDocuments(pb.UpsertDocumentsRequest(documents=documents), metadata=ACME)
    await expect_error(call, INVALID, "INVALID_ARGUMENT", field)
    assert await stack.chunks("acme") == before


@pytest.mark.parametrize(
    ("request_fields", "field", "reason"),
    [
        ({"query": ""}, "query", "INVALID_ARGUMENT"),
        ({"query": "x" * 4001}, "query", "INVALID_ARGUMENT"),
        ({"query": "q", "top_k": 101}, "top_k", "INVALID_ARGUMENT"),
        ({"query": "q", "top_k": -1}, "top_k", "INVALID_ARGUMENT"),
        ({"query": "q", "query_vector": [0.1, 0.2]}, "query_vector", "INVALID_ARGUMENT"),
        ({"query": "q", "score_threshold": 1.5}, "score_threshold", "INVALID_ARGUMENT"),
        (
            {
                "query": "q",
                "filters": [common_pb2.FilterCondition(key="k", operator=99, values=["v"])],
            },
            "filters[0].operator",
            "UNKNOWN_FILTER_OPERATOR",
        ),
        (
            {"query": "q", "filters": [common_pb2.FilterCondition(key="k", values=["v"])]},
            "filters[0].operator",
            "UNKNOWN_FILTER_OPERATOR",
        ),
        (
            {
                "query": "q",
                "filters": [
                    common_pb2.FilterCondition(
                        key="k", operator=common_pb2.FILTER_OPERATOR_EQUALS, values=["a", "b"]
                    )
                ],
            },
            "filters[0].values",
            "INVALID_ARGUMENT",
        ),
    ],
)
async def test_bad_queries_are_rejected_naming_the_field(
    stack, expect_error, request_fields, field, reason
):
    call = stack.stub.Retrieve(pb.RetrieveRequest(**request_fields), metadata=ACME)
    await expect_error(call, INVALID, reason, field)


async def test_a_call_on_behalf_of_no_reader_is_refused(stack, expect_error):
    call = stack.stub.Retrieve(pb.RetrieveRequest(query="volcano"))
    await expect_error(call, grpc.StatusCode.PERMISSION_DENIED, "ROLE_REQUIRED")


async def test_a_backup_restores_the_store_as_it_was(stack, expect_error):
    await upsert(
        stack.stub,
        pb.UpsertDocumentsRequest(documents=[doc("saved", "Lighthouses guide ships at night.")]),
        metadata=ACME,
    )
    archive = b"".join(
        m.data
        for m in await collect(stack.stub.CreateBackup(pb.CreateBackupRequest(), metadata=OPERATOR))
    )
    before = await stack.chunks("acme")
    # After the backup: one document replaced, one added, one deleted.
    await upsert(
        stack.stub,
        pb.UpsertDocumentsRequest(
            documents=[doc("saved", "Lighthouses are museums now."), doc("later", "Added.")]
        ),
        metadata=ACME,
    )

    async def pieces():
        for start in range(0, len(archive), 100_000):
            yield pb.RestoreBackupRequest(data=archive[start : start + 100_000])

    reply = await stack.stub.RestoreBackup(pieces(), metadata=OPERATOR)
    assert await stack.chunks("acme") == before
    assert reply.chunks >= before
    hits = await ask(stack, "What do lighthouses do?", top_k=10)
    texts = [h.text for h in hits]
    assert "Lighthouses guide ships at night." in texts
    assert "Lighthouses are museums now." not in texts and "Added." not in texts

    # Not an archive: refused, and the store is untouched.
    async def garbage():
        yield pb.RestoreBackupRequest(data=b"not a tar.gz at all")

    await expect_error(
        stack.stub.RestoreBackup(garbage(), metadata=OPERATOR),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="data",
    )
    assert await stack.chunks("acme") == before
