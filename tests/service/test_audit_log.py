"""The audit log: a line per write, delete, admin action and denied call, never a secret."""

from __future__ import annotations

import json
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
from rag_common.telemetry.logs import JsonFormatter
from rag_query.config import ApiKey, QuerySettings
from tests.support.suite import in_process_suite

KEYS = {
    "writer-secret-key": ApiKey(tenant="acme", roles=["writer"], principal="ingest-bot"),
    "reader-secret-key": ApiKey(tenant="acme", roles=["reader"], principal="dashboard"),
}


def auth(key: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


@pytest.fixture
async def suite(embedder, tmp_path):
    async with in_process_suite(embedder, tmp_path, QuerySettings(port=0, api_keys=KEYS)) as s:
        yield s


def audit_lines(caplog) -> list[dict]:
    formatter = JsonFormatter("query")
    return [json.loads(formatter.format(r)) for r in caplog.records if r.name == "rag.audit"]


async def test_writes_deletes_admin_actions_and_refusals_are_each_one_line(suite, caplog):
    caplog.set_level(logging.INFO, logger="rag.audit")
    documents = doc_grpc.DocumentServiceStub(suite.channel)
    ingest = doc_pb.IngestDocumentsRequest(
        documents=[
            common_pb2.Document(id="plan", text="The secret plan is to ship on Friday."),
            common_pb2.Document(id="memo", text="Bring snacks."),
        ]
    )
    await documents.IngestDocuments(ingest, metadata=auth("writer-secret-key"), timeout=30)
    await pb_grpc.QueryServiceStub(suite.channel).Query(
        pb.QueryRequest(question="When do we ship?"), metadata=auth("reader-secret-key")
    )  # a read: no line
    delete = doc_pb.DeleteDocumentsRequest(document_ids=["memo"])
    await documents.DeleteDocuments(delete, metadata=auth("writer-secret-key"))
    with pytest.raises(grpc.aio.AioRpcError):
        await documents.DeleteDocuments(delete, metadata=auth("reader-secret-key"))
    with pytest.raises(grpc.aio.AioRpcError):
        await admin_grpc.AdminServiceStub(suite.channel).SetMaintenance(
            admin_pb.SetMaintenanceRequest(enabled=True), metadata=auth("writer-secret-key")
        )
    lines = audit_lines(caplog)
    summary = [
        (line["action"].rsplit("/", 1)[1], line["outcome"], line["principal"]) for line in lines
    ]
    assert summary == [
        ("IngestDocuments", "OK", "ingest-bot"),
        ("DeleteDocuments", "OK", "ingest-bot"),
        ("DeleteDocuments", "PERMISSION_DENIED", "dashboard"),
        ("SetMaintenance", "PERMISSION_DENIED", "ingest-bot"),
    ]
    assert lines[0]["document_ids"] == ["plan", "memo"] and lines[0]["tenant"] == "acme"
    assert lines[1]["document_ids"] == ["memo"]
    assert all(line["request_id"] for line in lines)
    printed = json.dumps(lines)
    assert "secret-key" not in printed and "ship on Friday" not in printed


async def test_a_client_looping_on_a_bad_key_writes_a_line_a_second_not_one_a_call(suite, caplog):
    caplog.set_level(logging.INFO, logger="rag.audit")
    stub = pb_grpc.QueryServiceStub(suite.channel)
    for _ in range(50):
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Query(pb.QueryRequest(question="hi"), metadata=auth("guessed-key"))
    lines = audit_lines(caplog)
    assert 1 <= len(lines) <= 3
    assert lines[0]["outcome"] == "UNAUTHENTICATED" and lines[0]["reason"] == "INVALID_API_KEY"
    assert "guessed-key" not in json.dumps(lines)


async def test_refused_writes_flood_no_audit_log_and_huge_ids_are_cut_before_retrieval(
    suite, caplog
):
    """300 refused writes each with no key, a guessed key and a reader's key; then a writer's
    delete of 100 ids of 80,000 characters: a few lines, none of them large, and the
    invalid delete refused by the query service without reaching retrieval."""
    caplog.set_level(logging.INFO, logger="rag.audit")
    documents = doc_grpc.DocumentServiceStub(suite.channel)
    delete = doc_pb.DeleteDocumentsRequest(document_ids=["memo"])
    for metadata in ([], auth("guessed-key"), auth("reader-secret-key")):
        for _ in range(300):
            with pytest.raises(grpc.aio.AioRpcError):
                await documents.DeleteDocuments(delete, metadata=metadata)
    refused_lines = audit_lines(caplog)
    assert len(refused_lines) <= 9, len(refused_lines)  # a line a second per caller and action
    caplog.clear()
    huge = doc_pb.DeleteDocumentsRequest(document_ids=[f"{n}" + "x" * 80_000 for n in range(100)])
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await documents.DeleteDocuments(huge, metadata=auth("writer-secret-key"), timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    lines = audit_lines(caplog)
    assert [line["action"] for line in lines] == ["/rag.v1.DocumentService/DeleteDocuments"]
    assert len(json.dumps(lines)) < 20_000  # was 8 MB, in query's log and retrieval's
