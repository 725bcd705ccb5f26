"""Fuzzing the public port: whatever a caller sends, it gets a clear status, never UNKNOWN
or INTERNAL, never a traceback, and the service keeps answering everyone else."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag.v1 import admin_service_pb2 as admin_pb
from rag.v1 import admin_service_pb2_grpc as admin_grpc
from rag.v1 import common_pb2
from rag.v1 import document_service_pb2 as doc_pb
from rag.v1 import document_service_pb2_grpc as doc_grpc
from rag.v1 import query_service_pb2 as pb
from rag.v1 import query_service_pb2_grpc as pb_grpc
from rag_query.config import ApiKey, QuerySettings
from tests.support.suite import in_process_suite

KEYS = {
    "fuzz-writer": ApiKey(tenant="fuzz", roles=["writer"]),
    "fuzz-operator": ApiKey(tenant="fuzz", roles=["operator"]),
}
AUTH = [("authorization", "Bearer fuzz-writer")]
OPERATOR = [("authorization", "Bearer fuzz-operator")]
# Every method of the public port, by its kind of reply.
UNARY_METHODS = (
    "/rag.v1.QueryService/Query",
    "/rag.v1.DocumentService/IngestDocuments",
    "/rag.v1.DocumentService/DeleteDocuments",
    "/rag.v1.DocumentService/ListDocuments",
    "/rag.v1.DocumentService/GetDocument",
    "/rag.v1.AdminService/SetMaintenance",
    "/rag.v1.AdminService/EraseTenantData",
    "/rag.v1.HealthDetailsService/GetHealthDetails",
    "/grpc.health.v1.Health/Check",
)
STREAMING_METHODS = ("/rag.v1.QueryService/StreamQuery",)
REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
# What a caller may be told: its own mistakes, and limits. Never UNKNOWN or INTERNAL.
CLEAR = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.NOT_FOUND,  # a document id that names nothing
}
FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

texts = st.text(max_size=300) | st.text(alphabet="\x00\n\t \u202e\ud7ff", max_size=50)
keys = st.text(max_size=80) | st.sampled_from(["lang", ".", "a..b", "lang\n", "x" * 65])
conditions = st.builds(
    common_pb2.FilterCondition,
    key=keys,
    operator=st.integers(min_value=-3, max_value=9),
    values=st.lists(texts, max_size=4),
)
options = st.builds(
    pb.QueryOptions,
    top_k=st.integers(min_value=-(2**31), max_value=2**31 - 1),
    filters=st.lists(conditions, max_size=3),
    max_tokens=st.integers(min_value=-5, max_value=10_000),
    provider=st.text(max_size=70),
    budget_ms=st.integers(min_value=-10, max_value=100_000),
)
questions = st.builds(pb.QueryRequest, question=texts, options=options)
streamed_questions = st.builds(pb.StreamQueryRequest, question=texts, options=options)
# Any ids but the one document every test still asks about.
document_ids = st.text(max_size=200).filter(lambda id_: id_ != "tides")
documents = st.builds(
    common_pb2.Document,
    id=st.text(max_size=200),
    text=texts,
    title=texts,
    metadata=st.dictionaries(keys, texts, max_size=4),
)
# Files: bytes that are some format's start, or anything, declared as anything.
files = st.builds(
    common_pb2.Document,
    id=st.sampled_from(["file-a", "file-b", "bad id!"]),
    content=st.builds(
        lambda head, tail: head + tail,
        st.sampled_from([b"", b"%PDF-1.7\n", b"PK\x03\x04", b"<html><body>", b"\xd0\xcf\x11\xe0"]),
        st.binary(max_size=2000),
    ),
    media_type=st.sampled_from(
        ["", "application/pdf", "text/html", "text/plain", "image/png", "x"]
    ),
)
listings = st.builds(
    doc_pb.ListDocumentsRequest,
    page_size=st.integers(min_value=-(2**31), max_value=2**31 - 1),
    page_token=st.text(max_size=80) | st.binary(max_size=40).map(lambda b: b.hex()),
    filters=st.lists(conditions, max_size=3),
)


@pytest.fixture(scope="module")
async def public(embedder, tmp_path_factory):
    settings_ = QuerySettings(port=0, api_keys=KEYS)
    async with in_process_suite(embedder, tmp_path_factory.mktemp("fuzz"), settings_) as suite:
        docs = doc_grpc.DocumentServiceStub(suite.channel)
        await docs.IngestDocuments(
            doc_pb.IngestDocumentsRequest(
                documents=[common_pb2.Document(id="tides", text="The Moon raises the tides.")]
            ),
            metadata=AUTH,
        )
        yield suite


def assert_clear(error: grpc.aio.AioRpcError) -> None:
    assert error.code() in CLEAR, (error.code(), error.details())
    assert "Traceback" not in (error.details() or "")


async def still_answers(suite) -> None:
    reply = await pb_grpc.QueryServiceStub(suite.channel).Query(
        pb.QueryRequest(question="What raises the tides?"), metadata=AUTH, timeout=30
    )
    assert reply.sources


async def answered_or_refused_clearly(call) -> None:
    """Await a unary call, or read a stream to its end; any refusal must be a clear one."""
    try:
        if hasattr(call, "__aiter__"):
            async for _ in call:
                pass
        else:
            await call
    except grpc.aio.AioRpcError as error:
        assert_clear(error)


@FUZZ
@given(request=questions)
async def test_any_question_gets_an_answer_or_a_clear_refusal(public, request):
    stub = pb_grpc.QueryServiceStub(public.channel)
    await answered_or_refused_clearly(stub.Query(request, metadata=AUTH, timeout=30))


@FUZZ
@given(request=streamed_questions)
async def test_any_streamed_question_gets_its_stream_or_a_clear_refusal(public, request):
    stub = pb_grpc.QueryServiceStub(public.channel)
    await answered_or_refused_clearly(stub.StreamQuery(request, metadata=AUTH, timeout=30))


@FUZZ
@given(batch=st.lists(documents, min_size=1, max_size=3))
async def test_any_ingest_is_stored_or_refused_clearly(public, batch):
    request = doc_pb.IngestDocumentsRequest(documents=batch)
    stub = doc_grpc.DocumentServiceStub(public.channel)
    await answered_or_refused_clearly(stub.IngestDocuments(request, metadata=AUTH, timeout=30))


@FUZZ
@given(
    ids=st.lists(document_ids, max_size=5) | st.lists(st.just("x"), min_size=1001, max_size=1001)
)
async def test_any_delete_is_done_or_refused_clearly(public, ids):
    request = doc_pb.DeleteDocumentsRequest(document_ids=ids)
    stub = doc_grpc.DocumentServiceStub(public.channel)
    await answered_or_refused_clearly(stub.DeleteDocuments(request, metadata=AUTH, timeout=30))


@FUZZ
@given(enabled=st.booleans(), message=texts | st.text(min_size=450, max_size=700))
async def test_any_maintenance_request_is_done_or_refused_clearly(public, enabled, message):
    admin = admin_grpc.AdminServiceStub(public.channel)
    request = admin_pb.SetMaintenanceRequest(enabled=enabled, message=message)
    try:
        await answered_or_refused_clearly(
            admin.SetMaintenance(request, metadata=OPERATOR, timeout=30)
        )
    finally:  # the other tests go on answering
        await admin.SetMaintenance(admin_pb.SetMaintenanceRequest(), metadata=OPERATOR)


@FUZZ
@pytest.mark.parametrize("method", UNARY_METHODS + STREAMING_METHODS)
@given(payload=st.binary(max_size=400))
async def test_any_bytes_are_invalid_argument_at_worst(public, method, payload):
    # As a writer: bytes that happen to parse cannot switch maintenance on for the rest.
    kind = (
        public.channel.unary_stream if method in STREAMING_METHODS else public.channel.unary_unary
    )
    await answered_or_refused_clearly(kind(method)(payload, metadata=AUTH, timeout=30))


@FUZZ
@given(payload=st.binary(max_size=400))
async def test_any_bytes_to_reflection_are_invalid_argument_at_worst(public, payload):
    call = public.channel.stream_stream(REFLECTION)(timeout=30)
    await call.write(payload)
    await call.done_writing()
    await answered_or_refused_clearly(call)


async def test_after_the_fuzzing_everyone_is_still_answered(public):
    await still_answers(public)


async def test_health_watch_is_refused_so_keyless_streams_hold_no_slot(public):
    # Watch never ends by itself and needs no key: served, it would let anyone hold every
    # server slot. Check, which probes use, still answers.
    watch = public.channel.unary_stream("/grpc.health.v1.Health/Watch")
    for payload, code in (
        (b"", grpc.StatusCode.UNIMPLEMENTED),
        (b"\xff", grpc.StatusCode.INVALID_ARGUMENT),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            async for _ in watch(payload, timeout=5):
                pass
        assert refused.value.code() == code
    check = health_pb2_grpc.HealthStub(public.channel).Check
    reply = await check(health_pb2.HealthCheckRequest(service="liveness"), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


@FUZZ
@given(batch=st.lists(files, min_size=1, max_size=2))
async def test_any_file_is_converted_and_stored_or_refused_clearly(public, batch):
    request = doc_pb.IngestDocumentsRequest(documents=batch)
    stub = doc_grpc.DocumentServiceStub(public.channel)
    await answered_or_refused_clearly(stub.IngestDocuments(request, metadata=AUTH, timeout=30))


@FUZZ
@given(request=listings, document_id=st.text(max_size=200))
async def test_any_listing_or_lookup_is_answered_or_refused_clearly(public, request, document_id):
    stub = doc_grpc.DocumentServiceStub(public.channel)
    await answered_or_refused_clearly(stub.ListDocuments(request, metadata=AUTH, timeout=30))
    lookup = doc_pb.GetDocumentRequest(document_id=document_id)
    await answered_or_refused_clearly(stub.GetDocument(lookup, metadata=AUTH, timeout=30))
