"""The document API on the public port: a tenant lists and inspects what it has stored, and
its admin erases all of it, while another tenant's documents stay untouched and unseen."""

from __future__ import annotations

import hashlib
import logging

import grpc
import pytest

from rag.v1 import admin_service_pb2 as admin_pb
from rag.v1 import admin_service_pb2_grpc as admin_grpc
from rag.v1 import common_pb2
from rag.v1 import document_service_pb2 as doc_pb
from rag.v1 import document_service_pb2_grpc as doc_grpc
from rag.v1 import query_service_pb2 as pb
from rag.v1 import query_service_pb2_grpc as pb_grpc
from rag_common import status
from rag_query.config import ApiKey, QuerySettings
from rag_query.conversion import media
from tests.support import documents
from tests.support.suite import in_process_suite

KEYS = {
    "acme-writer": ApiKey(tenant="acme", roles=["writer", "reader"], principal="ana"),
    "acme-reader": ApiKey(tenant="acme", roles=["reader"]),
    "acme-admin": ApiKey(tenant="acme", roles=["admin"], principal="boss"),
    "globex-writer": ApiKey(tenant="globex", roles=["writer", "reader"]),
}
NOTES = {
    "hr/leave": ("Leave", "Employees get 30 days of paid leave a year.", {"team": "hr"}),
    "hr/sick": ("Sick days", "Report a sick day to your manager before nine.", {"team": "hr"}),
    "it/vpn": ("VPN", "Connect to the VPN before opening the intranet.", {"team": "it"}),
}


def auth(key: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


@pytest.fixture(scope="module")
async def suite(embedder, tmp_path_factory):
    settings = QuerySettings(port=0, api_keys=KEYS)
    async with in_process_suite(embedder, tmp_path_factory.mktemp("docs"), settings) as suite:
        stub = doc_grpc.DocumentServiceStub(suite.channel)
        for doc_id, (title, text, metadata) in NOTES.items():  # one call each: in order
            document = common_pb2.Document(id=doc_id, title=title, text=text, metadata=metadata)
            await stub.IngestDocuments(
                doc_pb.IngestDocumentsRequest(documents=[document]),
                metadata=auth("acme-writer"),
                timeout=60,
            )
        manual = common_pb2.Document(id="manuals/ember", content=documents.kiln_manual_pdf())
        await stub.IngestDocuments(
            doc_pb.IngestDocumentsRequest(documents=[manual]),
            metadata=auth("acme-writer"),
            timeout=60,
        )
        globex = common_pb2.Document(id="hr/leave", text="Globex gives 20 days of leave.")
        await stub.IngestDocuments(
            doc_pb.IngestDocumentsRequest(documents=[globex]),
            metadata=auth("globex-writer"),
            timeout=60,
        )
        yield suite


async def listed(suite, key: str, **fields) -> doc_pb.ListDocumentsResponse:
    stub = doc_grpc.DocumentServiceStub(suite.channel)
    return await stub.ListDocuments(
        doc_pb.ListDocumentsRequest(**fields), metadata=auth(key), timeout=30
    )


async def test_a_reader_lists_its_tenants_documents_newest_first_a_page_at_a_time(suite):
    first = await listed(suite, "acme-reader", page_size=3)
    assert [d.document_id for d in first.documents] == ["manuals/ember", "it/vpn", "hr/sick"]
    rest = await listed(suite, "acme-reader", page_size=3, page_token=first.next_page_token)
    assert [d.document_id for d in rest.documents] == ["hr/leave"]
    assert rest.next_page_token == ""


async def test_a_listing_filters_by_metadata_and_never_shows_another_tenant(suite):
    hr = await listed(
        suite,
        "acme-reader",
        filters=[
            common_pb2.FilterCondition(
                key="team", operator=common_pb2.FILTER_OPERATOR_EQUALS, values=["hr"]
            )
        ],
    )
    assert sorted(d.document_id for d in hr.documents) == ["hr/leave", "hr/sick"]
    globex = await listed(suite, "globex-writer")
    assert [(d.document_id, d.chars) for d in globex.documents] == [("hr/leave", 30)]


async def test_a_document_shows_what_was_stored_by_whom(suite):
    stub = doc_grpc.DocumentServiceStub(suite.channel)
    reply = await stub.GetDocument(
        doc_pb.GetDocumentRequest(document_id="manuals/ember"), metadata=auth("acme-reader")
    )
    manual = reply.document
    assert (manual.media_type, manual.pages, manual.title) == (
        media.PDF,
        4,
        "Ember 40 kiln manual",
    )
    assert manual.chunks >= 3 and manual.chars > 1000 and manual.ingested_by == "ana"
    assert manual.ingested_at.seconds > 1_700_000_000
    leave = (
        await stub.GetDocument(
            doc_pb.GetDocumentRequest(document_id="hr/leave"), metadata=auth("acme-reader")
        )
    ).document
    text = NOTES["hr/leave"][1]
    assert leave.content_sha256 == hashlib.sha256(text.encode()).hexdigest()
    assert (leave.media_type, leave.chars, dict(leave.metadata)) == ("", len(text), {"team": "hr"})


@pytest.mark.parametrize(
    ("document_id", "code"),
    [("missing", "NOT_FOUND"), ("bad id!", "INVALID_ARGUMENT"), ("", "INVALID_ARGUMENT")],
)
async def test_an_unknown_or_malformed_id_is_refused(suite, document_id, code):
    stub = doc_grpc.DocumentServiceStub(suite.channel)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.GetDocument(
            doc_pb.GetDocumentRequest(document_id=document_id), metadata=auth("acme-reader")
        )
    assert refused.value.code().name == code


async def test_a_page_token_that_is_no_token_is_refused_naming_it(suite):
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await listed(suite, "acme-reader", page_token="not-a-token")
    assert status.error_info(refused.value).metadata["field"] == "page_token"


async def test_only_the_tenants_admin_erases_and_only_when_it_names_its_tenant(suite):
    admin = admin_grpc.AdminServiceStub(suite.channel)
    with pytest.raises(grpc.aio.AioRpcError) as writer:
        await admin.EraseTenantData(
            admin_pb.EraseTenantDataRequest(confirm_tenant="acme"), metadata=auth("acme-writer")
        )
    assert writer.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as mistyped:
        await admin.EraseTenantData(
            admin_pb.EraseTenantDataRequest(confirm_tenant="globex"), metadata=auth("acme-admin")
        )
    assert status.error_info(mistyped.value).metadata["field"] == "confirm_tenant"
    assert len((await listed(suite, "acme-reader")).documents) == 4


async def test_erasing_a_tenant_removes_its_documents_and_answers_and_no_one_elses(suite, caplog):
    query = pb_grpc.QueryServiceStub(suite.channel)
    question = pb.QueryRequest(
        question="How many days of paid leave do employees get?",
        options=pb.QueryOptions(provider="extractive"),
    )
    before = await query.Query(question, metadata=auth("acme-reader"))
    assert before.sources and "30 days" in before.text
    assert (await query.Query(question, metadata=auth("acme-reader"))).cache == "exact"

    caplog.set_level(logging.INFO, logger="rag.audit")
    admin = admin_grpc.AdminServiceStub(suite.channel)
    erased = await admin.EraseTenantData(
        admin_pb.EraseTenantDataRequest(confirm_tenant="acme"), metadata=auth("acme-admin")
    )
    assert (erased.deleted_documents, erased.deleted_chunks >= 6) == (4, True)

    assert (await listed(suite, "acme-reader")).documents == []
    after = await query.Query(question, metadata=auth("acme-reader"))
    assert not after.cache and not after.sources and "30 days" not in after.text
    globex = await query.Query(question, metadata=auth("globex-writer"))
    assert "20 days" in globex.text
    [line] = [r for r in caplog.records if getattr(r, "action", "").endswith("EraseTenantData")]
    assert (line.principal, line.tenant, line.outcome) == ("boss", "acme", "OK")
