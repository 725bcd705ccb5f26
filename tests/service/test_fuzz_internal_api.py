"""Fuzzing the internal ports with valid credentials: a caller that holds the suite's key
(or a token it captured) sends anything; every reply is a result or a clear refusal,
never UNKNOWN or INTERNAL, and the services go on answering."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag.v1 import common_pb2
from rag.v1 import embedding_service_pb2 as embedding_pb
from rag.v1 import embedding_service_pb2_grpc as embedding_grpc
from rag.v1 import generation_service_pb2 as generation_pb
from rag.v1 import generation_service_pb2_grpc as generation_grpc
from rag.v1 import retrieval_service_pb2 as retrieval_pb
from rag.v1 import retrieval_service_pb2_grpc as retrieval_grpc
from rag_common.security.identity import Identity
from tests.service.test_fuzz_public_api import (
    answered_or_refused_clearly,
    documents,
    keys,
    texts,
)
from tests.support.signed import Signed, signed_channel
from tests.support.suite import internal_services

WRITER = Signed("retrieval", Identity("fuzzer", "fuzz", frozenset({"writer"})))
FUZZ = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
METHODS = {
    "retrieval": ("/rag.v1.RetrievalService/Retrieve", "/rag.v1.RetrievalService/DeleteDocuments"),
    "embedding": ("/rag.v1.EmbeddingService/Embed", "/rag.v1.EmbeddingService/GetModelInfo"),
    "generation": ("/rag.v1.GenerationService/Generate",),
}

conditions = st.builds(
    common_pb2.FilterCondition,
    key=keys,
    operator=st.integers(min_value=-3, max_value=9),
    values=st.lists(texts, max_size=4),
)
floats = st.floats(allow_nan=True, allow_infinity=True, width=32)
searches = st.builds(
    retrieval_pb.RetrieveRequest,
    query=texts,
    query_vector=st.lists(floats, max_size=3) | st.lists(floats, min_size=384, max_size=384),
    top_k=st.integers(min_value=-(2**31), max_value=2**31 - 1),
    filters=st.lists(conditions, max_size=3),
    search_mode=st.integers(min_value=-1, max_value=5),
)
sources = st.builds(common_pb2.Source, document_id=texts, text=texts, title=texts)
generations = st.builds(
    generation_pb.GenerateRequest,
    input=st.builds(
        generation_pb.GenerationInput,
        question=texts,
        sources=st.lists(sources, max_size=4),
        max_tokens=st.integers(min_value=-5, max_value=100_000),
        provider=st.text(max_size=70),
    ),
)


@pytest.fixture(scope="module")
async def internal(embedder, tmp_path_factory):
    async with internal_services(embedder, tmp_path_factory.mktemp("fuzz-internal")) as services:
        channels = {
            name: signed_channel(address, name) for name, address in services.addresses.items()
        }
        yield channels
        for channel in channels.values():
            await channel.close()


@FUZZ
@given(request=searches)
async def test_any_search_is_answered_or_refused_clearly(internal, request):
    stub = retrieval_grpc.RetrievalServiceStub(internal["retrieval"])
    await answered_or_refused_clearly(stub.Retrieve(request, metadata=WRITER, timeout=30))


@FUZZ
@given(batch=st.lists(documents, min_size=1, max_size=3))
async def test_any_upsert_is_stored_or_refused_clearly(internal, batch):
    stub = retrieval_grpc.RetrievalServiceStub(internal["retrieval"])
    request = retrieval_pb.UpsertDocumentsRequest(documents=batch)
    await answered_or_refused_clearly(stub.UpsertDocuments(request, metadata=WRITER, timeout=30))


@FUZZ
@given(texts_=st.lists(texts, max_size=5) | st.lists(st.just("x"), min_size=257, max_size=257))
async def test_any_embedding_request_is_answered_or_refused_clearly(internal, texts_):
    stub = embedding_grpc.EmbeddingServiceStub(internal["embedding"])
    request = embedding_pb.EmbedRequest(texts=texts_, purpose=1)
    await answered_or_refused_clearly(stub.Embed(request, timeout=30))


@FUZZ
@given(request=generations)
async def test_any_generation_request_is_answered_or_refused_clearly(internal, request):
    stub = generation_grpc.GenerationServiceStub(internal["generation"])
    await answered_or_refused_clearly(stub.Generate(request, timeout=30))


@FUZZ
@given(
    batch=st.lists(
        st.tuples(generations, st.integers(min_value=0, max_value=2**32 - 1)), max_size=34
    )
)
async def test_any_generation_batch_is_answered_item_by_item_or_refused_clearly(internal, batch):
    stub = generation_grpc.GenerationServiceStub(internal["generation"])
    items = [generation_pb.GenerateBatchItem(input=r.input, timeout_ms=t) for r, t in batch]
    call = stub.GenerateBatch(generation_pb.GenerateBatchRequest(items=items), timeout=30)
    await answered_or_refused_clearly(call)


@FUZZ
@pytest.mark.parametrize(
    ("service", "method"), [(s, m) for s, methods in METHODS.items() for m in methods]
)
@given(payload=st.binary(max_size=400))
async def test_any_bytes_to_an_internal_method_are_invalid_argument_at_worst(
    internal, service, method, payload
):
    call = internal[service].unary_unary(method)(payload, metadata=WRITER, timeout=30)
    await answered_or_refused_clearly(call)


async def test_after_the_fuzzing_every_internal_service_still_answers(internal):
    stub = embedding_grpc.EmbeddingServiceStub(internal["embedding"])
    reply = await stub.Embed(embedding_pb.EmbedRequest(texts=["still here"]), timeout=30)
    assert len(reply.embeddings) == 1
    stub = retrieval_grpc.RetrievalServiceStub(internal["retrieval"])
    await stub.Retrieve(retrieval_pb.RetrieveRequest(query="still"), metadata=WRITER, timeout=30)
