"""Fuzzing the public port: whatever a caller sends, it gets a clear status, never UNKNOWN
or INTERNAL, never a traceback, and the service keeps answering everyone else."""

from __future__ import annotations

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag.v1 import common_pb2
from rag.v1 import document_service_pb2 as doc_pb
from rag.v1 import document_service_pb2_grpc as doc_grpc
from rag.v1 import query_service_pb2 as pb
from rag.v1 import query_service_pb2_grpc as pb_grpc
from rag_query.config import ApiKey, QuerySettings
from tests.support.suite import in_process_suite

KEYS = {"fuzz-writer": ApiKey(tenant="fuzz", roles=["writer"])}
AUTH = [("authorization", "Bearer fuzz-writer")]
# What a caller may be told: its own mistakes, and limits. Never UNKNOWN or INTERNAL.
CLEAR = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
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
documents = st.builds(
    common_pb2.Document,
    id=st.text(max_size=200),
    text=texts,
    title=texts,
    metadata=st.dictionaries(keys, texts, max_size=4),
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


@FUZZ
@given(request=questions)
async def test_any_question_gets_an_answer_or_a_clear_refusal(public, request):
    try:
        await pb_grpc.QueryServiceStub(public.channel).Query(request, metadata=AUTH, timeout=30)
    except grpc.aio.AioRpcError as error:
        assert_clear(error)


@FUZZ
@given(batch=st.lists(documents, min_size=1, max_size=3))
async def test_any_ingest_is_stored_or_refused_clearly(public, batch):
    try:
        await doc_grpc.DocumentServiceStub(public.channel).IngestDocuments(
            doc_pb.IngestDocumentsRequest(documents=batch), metadata=AUTH, timeout=30
        )
    except grpc.aio.AioRpcError as error:
        assert_clear(error)


@FUZZ
@given(payload=st.binary(max_size=400))
async def test_any_bytes_are_invalid_argument_at_worst(public, payload):
    raw = public.channel.unary_unary("/rag.v1.QueryService/Query")
    try:
        await raw(payload, metadata=AUTH, timeout=30)
    except grpc.aio.AioRpcError as error:
        assert_clear(error)


async def test_after_the_fuzzing_everyone_is_still_answered(public):
    await still_answers(public)
