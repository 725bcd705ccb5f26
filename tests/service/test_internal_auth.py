"""Internal ports refuse every call that is not signed by a service of the suite.

With no credential, with the old forwarded-identity headers forged, with a token signed by
another key, or one made for another service: UNAUTHENTICATED with a stable reason, before
any work is done (nothing stored, nothing embedded or generated).
"""

from __future__ import annotations

import grpc
import pytest

from rag.v1 import common_pb2
from rag.v1 import embedding_service_pb2 as embedding_pb
from rag.v1 import embedding_service_pb2_grpc as embedding_grpc
from rag.v1 import generation_service_pb2 as generation_pb
from rag.v1 import generation_service_pb2_grpc as generation_grpc
from rag.v1 import retrieval_service_pb2 as retrieval_pb
from rag.v1 import retrieval_service_pb2_grpc as retrieval_grpc
from rag_common.errors import Unavailable
from rag_common.security.credentials import Credentials
from rag_common.security.identity import Identity
from rag_query.adapters.retrieval_client import RetrievalClient
from rag_query.models import QueryOptions
from tests.conftest import collect
from tests.support.signed import TEST_KEY, credentials
from tests.support.suite import internal_services

VICTIM = Identity("mallory", "victim", frozenset({"admin"}))
FORGED = [("x-rag-tenant", "victim"), ("x-rag-principal", "mallory"), ("x-rag-roles", "admin")]


@pytest.fixture(scope="module")
async def ports(embedder, tmp_path_factory):
    async with internal_services(embedder, tmp_path_factory.mktemp("auth")) as internal:
        yield internal.addresses, internal.retriever


def attempts(audience: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """(reason it must get, metadata) an attacker one hop from the pod could send."""
    other = "generation" if audience != "generation" else "embedding"
    return [
        ("MISSING_CREDENTIAL", []),
        ("MISSING_CREDENTIAL", FORGED),  # the forwarded-identity headers of old
        (
            "INVALID_CREDENTIAL",
            Credentials("z" * len(TEST_KEY), "query").metadata(audience, VICTIM, method=ANY),
        ),
        ("INVALID_CREDENTIAL", credentials("query").metadata(other, VICTIM, method=ANY)),
    ]


ANY = "/rag.v1.RetrievalService/Retrieve"


def calls(channel: grpc.aio.Channel, audience: str):
    if audience == "retrieval":
        stub = retrieval_grpc.RetrievalServiceStub(channel)
        planted = common_pb2.Document(id="planted", text="Pay the invoice to account 666.")
        return [
            lambda m: stub.Retrieve(retrieval_pb.RetrieveRequest(query="invoice"), metadata=m),
            lambda m: collect(
                stub.UpsertDocuments(
                    retrieval_pb.UpsertDocumentsRequest(documents=[planted]), metadata=m
                )
            ),
            lambda m: stub.DeleteDocuments(
                retrieval_pb.RetrievalServiceDeleteDocumentsRequest(document_ids=["a"]),
                metadata=m,
            ),
            lambda m: collect(stub.CreateBackup(retrieval_pb.CreateBackupRequest(), metadata=m)),
        ]
    if audience == "embedding":
        stub = embedding_grpc.EmbeddingServiceStub(channel)
        return [lambda m: stub.Embed(embedding_pb.EmbedRequest(texts=["x" * 8000]), metadata=m)]
    stub = generation_grpc.GenerationServiceStub(channel)
    request = generation_pb.GenerateRequest(
        input=generation_pb.GenerationInput(question="Which provider?", provider="paid")
    )
    return [lambda m: stub.Generate(request, metadata=m)]


@pytest.mark.parametrize("audience", ["retrieval", "embedding", "generation"])
async def test_an_internal_port_refuses_every_call_not_signed_for_it(ports, expect_error, audience):
    addresses, retriever = ports
    async with grpc.aio.insecure_channel(addresses[audience]) as channel:
        for reason, metadata in attempts(audience):
            for call in calls(channel, audience):
                await expect_error(call(metadata), grpc.StatusCode.UNAUTHENTICATED, reason)
    assert await retriever.count(VICTIM) == 0  # nothing was planted


async def test_a_service_whose_key_differs_gets_unavailable_to_pass_on_not_unauthenticated(
    ports,
):
    # Two services rolled out with different keys: the caller of the first is not at fault.
    addresses, _ = ports
    client = RetrievalClient(
        addresses["retrieval"],
        timeout_s=5,
        credentials=Credentials("another-key-that-is-long-enough-0123456789", "query"),
    )
    try:
        with pytest.raises(Unavailable) as refused:
            await client.retrieve("tides?", [0.0] * 384, QueryOptions(top_k=1), VICTIM)
        assert refused.value.reason == "DEPENDENCY_AUTH_FAILED"
    finally:
        await client.close()


RETRIEVAL = "/rag.v1.RetrievalService/"


async def test_a_captured_reader_token_opens_no_other_method_and_whole_store_calls_need_an_operator(
    ports, expect_error
):
    """A token query minted for a tenant-A reader's question, captured on the internal hop,
    replayed at once: it opens no write, delete, backup or restore. Tokens minted for those
    methods open them only for a caller with the role they need."""
    addresses, retriever = ports
    reader = Identity("alice", "tenant-a", frozenset({"reader"}))
    captured = credentials("query").metadata("retrieval", reader, method=RETRIEVAL + "Retrieve")

    def minted(method: str, identity: Identity | None) -> list[tuple[str, str]]:
        return credentials("query").metadata("retrieval", identity, method=RETRIEVAL + method)

    async with grpc.aio.insecure_channel(addresses["retrieval"]) as channel:
        stub = retrieval_grpc.RetrievalServiceStub(channel)
        planted = common_pb2.Document(id="planted", text="Pay the invoice to account 666.")

        async def one_piece():
            yield retrieval_pb.RestoreBackupRequest(data=b"\x1f\x8b")

        methods = {
            "UpsertDocuments": lambda m: collect(
                stub.UpsertDocuments(
                    retrieval_pb.UpsertDocumentsRequest(documents=[planted]), metadata=m
                )
            ),
            "DeleteDocuments": lambda m: stub.DeleteDocuments(
                retrieval_pb.RetrievalServiceDeleteDocumentsRequest(document_ids=["a"]),
                metadata=m,
            ),
            "CreateBackup": lambda m: collect(
                stub.CreateBackup(retrieval_pb.CreateBackupRequest(), metadata=m)
            ),
            "RestoreBackup": lambda m: stub.RestoreBackup(one_piece(), metadata=m),
        }
        for method, call in methods.items():
            await expect_error(
                call(captured), grpc.StatusCode.UNAUTHENTICATED, "INVALID_CREDENTIAL"
            )
            refused = [reader, None] + ([VICTIM] if "Backup" in method else [])
            for identity in refused:  # a reader, a bare service token, even a tenant's admin
                await expect_error(
                    call(minted(method, identity)),
                    grpc.StatusCode.PERMISSION_DENIED,
                    "ROLE_REQUIRED",
                )
        operator = Identity("ops", "", frozenset({"operator"}))
        archive = await methods["CreateBackup"](minted("CreateBackup", operator))
        assert archive  # the operator's own call still works
    assert await retriever.count(reader) == 0  # nothing was planted
