"""Attacks on tenant isolation through every read path, and on secrets through every output.

Two tenants hold documents with the same ids and the same questions; one of them labels its
document with the other's name in metadata, to try to widen its filters. No answer, source,
cache hit or write may ever cross. Then every log line, error reply and health report of a
session full of mistakes is searched for the keys.
"""

from __future__ import annotations

import asyncio
import json
import logging

import grpc
import pytest

from rag.v1 import common_pb2
from rag.v1 import document_service_pb2 as doc_pb
from rag.v1 import document_service_pb2_grpc as doc_grpc
from rag.v1 import health_details_service_pb2 as health_pb
from rag.v1 import health_details_service_pb2_grpc as health_grpc
from rag.v1 import query_service_pb2 as pb
from rag.v1 import query_service_pb2_grpc as pb_grpc
from rag_common.telemetry.logs import JsonFormatter
from rag_query.config import ApiKey, QuerySettings
from tests.support.signed import TEST_KEY
from tests.support.suite import in_process_suite

KEYS = {
    "acme-very-secret-key": ApiKey(tenant="acme", roles=["writer"]),
    "globex-very-secret-key": ApiKey(tenant="globex", roles=["writer"]),
}
ACME, GLOBEX = "acme-very-secret-key", "globex-very-secret-key"
QUESTION = "How many vacation days do staff get?"
PARAPHRASE = "How many days of vacation do the staff get?"


def auth(key: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


@pytest.fixture(scope="module")
async def suite(embedder, tmp_path_factory):
    # Each tenant may hold most of the pipeline (as on a large machine), so that one
    # tenant's questions asked at once share internal calls while the other's do too.
    settings = QuerySettings(
        port=0, api_keys=KEYS, semantic_cache_threshold=0.9, tenant_pipeline_share=12
    )
    async with in_process_suite(embedder, tmp_path_factory.mktemp("isolation"), settings) as s:
        documents = doc_grpc.DocumentServiceStub(s.channel)
        for key, text, metadata in (
            (ACME, "Acme staff get 30 days of vacation a year.", {"owner": "acme"}),
            # Globex labels its document as Acme's, hoping a filter on the label widens.
            (GLOBEX, "Globex staff get 12 days of vacation a year.", {"owner": "acme"}),
        ):
            document = common_pb2.Document(id="handbook", text=text, metadata=metadata)
            await documents.IngestDocuments(
                doc_pb.IngestDocumentsRequest(documents=[document]), metadata=auth(key)
            )
        yield s


def foreign(reply, key: str) -> list[str]:
    """Texts in a reply that belong to the other tenant."""
    other = "Globex" if key == ACME else "Acme"
    return [t for t in [reply.text, *(s.text for s in reply.sources)] if other in t]


async def ask(suite, key: str, question: str = QUESTION, **options) -> pb.QueryResponse:
    request = pb.QueryRequest(question=question, options=pb.QueryOptions(**options))
    return await pb_grpc.QueryServiceStub(suite.channel).Query(request, metadata=auth(key))


@pytest.mark.parametrize("key", [ACME, GLOBEX])
async def test_query_and_stream_answer_from_the_callers_documents_only(suite, key):
    reply = await ask(suite, key)
    assert reply.sources and not foreign(reply, key)
    stream = pb_grpc.QueryServiceStub(suite.channel).StreamQuery(
        pb.StreamQueryRequest(question=QUESTION), metadata=auth(key)
    )
    parts = [part async for part in stream]
    streamed = " ".join(
        [p.delta for p in parts if p.delta] + [s.text for p in parts for s in p.sources.sources]
    )
    other = "Globex" if key == ACME else "Acme"
    assert streamed and other not in streamed


@pytest.mark.parametrize("key", [ACME, GLOBEX])
async def test_a_filter_never_reaches_past_the_callers_tenant(suite, key):
    owner = common_pb2.FilterCondition(
        key="owner", operator=common_pb2.FILTER_OPERATOR_EQUALS, values=["acme"]
    )
    tenant = common_pb2.FilterCondition(
        key="tenant", operator=common_pb2.FILTER_OPERATOR_IN, values=["acme", "globex"]
    )
    for filters in ([owner], [tenant]):
        reply = await ask(suite, key, filters=filters)
        assert not foreign(reply, key), filters


async def test_neither_cache_answers_one_tenant_with_anothers_answer(suite):
    first = await ask(suite, ACME, "Vacation days for staff?")
    again = await ask(suite, ACME, "Vacation days for staff?")
    assert again.cache == "exact" and not foreign(first, ACME)
    other = await ask(suite, GLOBEX, "Vacation days for staff?")
    assert other.cache == "" and not foreign(other, GLOBEX)
    # A paraphrase: Acme's is answered from Acme's semantic cache; Globex's may hit only
    # Globex's own earlier answer, never Acme's.
    assert (await ask(suite, ACME, PARAPHRASE)).cache == "semantic"
    crossed = await ask(suite, GLOBEX, PARAPHRASE)
    assert not foreign(crossed, GLOBEX)


async def test_questions_of_two_tenants_asked_at_once_share_calls_but_never_content(suite):
    # Questions waiting at once go to each internal service together (one Embed, one
    # RetrieveBatch, one GenerateBatch), one caller's at a time.
    questions = [
        "How much paid leave does a staff member receive?",
        "What is the annual holiday allowance?",
        "How many days off are there per year?",
        "Vacation entitlement for employees?",
        "How long is the yearly leave?",
        "What time off do workers get each year?",
        "Number of holiday days granted annually?",
        "How much vacation is given per year?",
    ]
    asked = [(key, q) for q in questions for key in (ACME, GLOBEX)]
    replies = await asyncio.gather(*(ask(suite, key, q) for key, q in asked))
    for (key, _), reply in zip(asked, replies, strict=True):
        assert reply.sources and not foreign(reply, key)
        own = "Acme" if key == ACME else "Globex"
        assert own in reply.text


async def test_one_tenants_writes_never_touch_another_tenants_documents(suite):
    documents = doc_grpc.DocumentServiceStub(suite.channel)
    await documents.DeleteDocuments(
        doc_pb.DeleteDocumentsRequest(document_ids=["handbook"]), metadata=auth(GLOBEX)
    )
    assert "Acme staff" in (await ask(suite, ACME, "How long is Acme vacation?")).sources[0].text
    replaced = common_pb2.Document(id="handbook", text="Globex staff now get 15 days off.")
    await documents.IngestDocuments(
        doc_pb.IngestDocumentsRequest(documents=[replaced]), metadata=auth(GLOBEX)
    )
    acme = await ask(suite, ACME, "How long is the vacation at Acme?")
    assert "30 days" in acme.sources[0].text and not foreign(acme, ACME)


async def test_no_key_ever_shows_in_a_log_line_an_error_or_health(suite, caplog):
    caplog.set_level(logging.DEBUG)
    stub = pb_grpc.QueryServiceStub(suite.channel)
    seen: list[str] = []
    for metadata, request in (
        (auth(ACME), pb.QueryRequest(question="Fine question?")),
        (auth(ACME[:-1]), pb.QueryRequest(question="Almost the key?")),
        ([("authorization", ACME)], pb.QueryRequest(question="No scheme?")),
        (auth(ACME), pb.QueryRequest(question="")),
        (auth(ACME), pb.QueryRequest(question="x", options=pb.QueryOptions(top_k=-1))),
    ):
        try:
            await stub.Query(request, metadata=metadata)
        except grpc.aio.AioRpcError as error:
            seen.append(f"{error.details()} {error.trailing_metadata()}")
    with pytest.raises(grpc.aio.AioRpcError) as refused:  # the system's state: not a tenant's
        await health_grpc.HealthDetailsServiceStub(suite.channel).GetHealthDetails(
            health_pb.GetHealthDetailsRequest(), metadata=auth(ACME)
        )
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    seen.append(f"{refused.value.details()} {refused.value.trailing_metadata()}")
    formatter = JsonFormatter("query")
    seen += [formatter.format(record) for record in caplog.records]
    everything = json.dumps(seen)
    for secret in (*KEYS, TEST_KEY, ACME[:-1]):
        assert secret not in everything
