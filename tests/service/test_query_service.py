"""QueryService and DocumentService on a real gRPC server, over the three internal servers."""

from __future__ import annotations

import asyncio
import logging

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rag.v1 import admin_service_pb2 as admin_pb
from rag.v1 import admin_service_pb2_grpc as admin_grpc
from rag.v1 import common_pb2
from rag.v1 import document_service_pb2 as doc_pb
from rag.v1 import document_service_pb2_grpc as doc_grpc
from rag.v1 import health_details_service_pb2 as health_details_pb
from rag.v1 import health_details_service_pb2_grpc as health_grpc
from rag.v1 import query_service_pb2 as pb
from rag.v1 import query_service_pb2_grpc as pb_grpc
from rag_query.config import ApiKey, QuerySettings
from tests.conftest import collect
from tests.support.suite import in_process_suite

INVALID = grpc.StatusCode.INVALID_ARGUMENT
KEYS = {
    "acme-writer": ApiKey(tenant="acme", roles=["writer"]),
    "acme-reader": ApiKey(tenant="acme", roles=["reader"]),
    "acme-admin": ApiKey(tenant="acme", roles=["admin"]),
    "acme-operator": ApiKey(tenant="acme", roles=["operator"]),
    "globex-writer": ApiKey(tenant="globex", roles=["writer"]),
}


def auth(key: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


WRITER, READER = auth("acme-writer"), auth("acme-reader")


class Public:
    """Stubs of the public services."""

    def __init__(self, channel: grpc.aio.Channel, retriever) -> None:
        self.channel = channel
        self.query = pb_grpc.QueryServiceStub(channel)
        self.documents = doc_grpc.DocumentServiceStub(channel)
        self.retriever = retriever

    async def stored_chunks(self) -> int:
        from rag_common.security.identity import Identity

        return await self.retriever.count(Identity("t", "acme", frozenset()))


@pytest.fixture(scope="module")
async def public(embedder, tmp_path_factory):
    settings = QuerySettings(port=0, api_keys=KEYS)
    async with in_process_suite(embedder, tmp_path_factory.mktemp("query"), settings) as suite:
        public = Public(suite.channel, suite.retriever)
        await public.documents.IngestDocuments(
            doc_pb.IngestDocumentsRequest(
                documents=[
                    common_pb2.Document(
                        id="tides",
                        title="Tides",
                        text="Tides are caused by the gravitational pull of the Moon.",
                    ),
                    common_pb2.Document(
                        id="bees",
                        title="Bees",
                        text="Honey bees communicate the direction of flowers by dancing.",
                    ),
                ]
            ),
            metadata=WRITER,
        )
        yield public


async def test_query_answers_with_cited_sources_and_timings(public):
    reply = await public.query.Query(
        pb.QueryRequest(question="What causes tides?"), metadata=READER
    )
    assert reply.sources[0].document_id == "tides"
    assert "gravitational pull of the Moon" in reply.text
    assert "[1]" in reply.text
    assert reply.provider == "extractive"
    assert reply.timings.embed_ms > 0 and reply.timings.retrieve_ms > 0
    t = reply.timings
    assert t.total_ms >= t.queued_ms + t.embed_ms + t.retrieve_ms + t.generate_ms
    assert reply.request_id


async def test_stream_query_sends_sources_then_text_then_the_whole_response(public):
    messages = await collect(
        public.query.StreamQuery(
            pb.StreamQueryRequest(question="How do bees communicate?"), metadata=READER
        )
    )
    assert messages[0].HasField("sources")
    assert messages[0].sources.sources[0].document_id == "bees"
    deltas = "".join(m.delta for m in messages if m.HasField("delta"))
    assert messages[-1].HasField("done")
    assert messages[-1].done.text == deltas
    assert "dancing" in deltas


async def test_top_k_limits_the_sources(public):
    reply = await public.query.Query(
        pb.QueryRequest(question="bees", options=pb.QueryOptions(top_k=1)), metadata=READER
    )
    assert [s.document_id for s in reply.sources] == ["bees"]


async def test_delete_makes_a_document_unfindable(public):
    await public.documents.IngestDocuments(
        doc_pb.IngestDocumentsRequest(
            documents=[common_pb2.Document(id="owls", text="Owls hunt at night.")]
        ),
        metadata=WRITER,
    )
    deleted = await public.documents.DeleteDocuments(
        doc_pb.DeleteDocumentsRequest(document_ids=["owls"]), metadata=WRITER
    )
    assert deleted.deleted_chunks == 1
    reply = await public.query.Query(pb.QueryRequest(question="owls at night"), metadata=READER)
    assert "owls" not in {s.document_id for s in reply.sources}


@pytest.mark.parametrize(
    ("request_", "field", "reason"),
    [
        (pb.QueryRequest(question=""), "question", "INVALID_ARGUMENT"),
        (pb.QueryRequest(question="   "), "question", "INVALID_ARGUMENT"),
        (pb.QueryRequest(question="x" * 2001), "question", "INVALID_ARGUMENT"),
        (
            pb.QueryRequest(question="q", options=pb.QueryOptions(top_k=51)),
            "options.top_k",
            "INVALID_ARGUMENT",
        ),
        (
            pb.QueryRequest(question="q", options=pb.QueryOptions(top_k=-3)),
            "options.top_k",
            "INVALID_ARGUMENT",
        ),
        (
            pb.QueryRequest(
                question="q",
                options=pb.QueryOptions(
                    filters=[common_pb2.FilterCondition(key="lang", operator=42, values=["en"])]
                ),
            ),
            "options.filters[0].operator",
            "UNKNOWN_FILTER_OPERATOR",
        ),
        (
            pb.QueryRequest(
                question="q",
                options=pb.QueryOptions(
                    filters=[
                        common_pb2.FilterCondition(
                            key="", operator=common_pb2.FILTER_OPERATOR_EQUALS, values=["en"]
                        )
                    ]
                ),
            ),
            "options.filters[0].key",
            "INVALID_ARGUMENT",
        ),
    ],
)
async def test_bad_questions_are_rejected_naming_the_field(
    public, expect_error, request_, field, reason
):
    await expect_error(public.query.Query(request_, metadata=READER), INVALID, reason, field)
    stream = pb.StreamQueryRequest(question=request_.question, options=request_.options)
    await expect_error(
        collect(public.query.StreamQuery(stream, metadata=READER)), INVALID, reason, field
    )


@pytest.mark.parametrize(
    ("documents", "field"),
    [
        ([], "documents"),
        (
            [common_pb2.Document(id="fine", text="ok"), common_pb2.Document(id="e", text="")],
            "documents[1].text",
        ),
        ([common_pb2.Document(id="huge", text="y" * 1_000_001)], "documents[0].text"),
        ([common_pb2.Document(id="no spaces allowed", text="text")], "documents[0].id"),
    ],
)
async def test_bad_documents_are_rejected_and_nothing_is_stored(
    public, expect_error, documents, field
):
    before = await public.stored_chunks()
    call = public.documents.IngestDocuments(
        doc_pb.IngestDocumentsRequest(documents=documents), metadata=WRITER
    )
    await expect_error(call, INVALID, "INVALID_ARGUMENT", field)
    assert await public.stored_chunks() == before


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [
        ([], "MISSING_CREDENTIALS"),
        (auth("not-a-key"), "INVALID_API_KEY"),
        ([("authorization", "Basic abc")], "MALFORMED_CREDENTIALS"),
        # Identity headers a caller sends itself are ignored: only the key counts.
        ([("x-rag-tenant", "acme"), ("x-rag-roles", "admin")], "MISSING_CREDENTIALS"),
    ],
)
async def test_callers_without_a_valid_key_are_unauthenticated(
    public, expect_error, metadata, reason
):
    call = public.query.Query(pb.QueryRequest(question="tides"), metadata=metadata)
    await expect_error(call, grpc.StatusCode.UNAUTHENTICATED, reason)


async def test_a_reader_cannot_ingest_or_delete(public, expect_error):
    before = await public.stored_chunks()
    ingest = public.documents.IngestDocuments(
        doc_pb.IngestDocumentsRequest(documents=[common_pb2.Document(id="x", text="text")]),
        metadata=READER,
    )
    await expect_error(ingest, grpc.StatusCode.PERMISSION_DENIED, "ROLE_REQUIRED")
    delete = public.documents.DeleteDocuments(
        doc_pb.DeleteDocumentsRequest(document_ids=["tides"]), metadata=READER
    )
    await expect_error(delete, grpc.StatusCode.PERMISSION_DENIED, "ROLE_REQUIRED")
    assert await public.stored_chunks() == before


async def test_an_operator_switches_maintenance_on_and_off(public, expect_error):
    admin = admin_grpc.AdminServiceStub(public.channel)
    health = health_pb2_grpc.HealthStub(public.channel)
    # Maintenance stops every tenant: neither a writer nor a tenant's own admin may.
    for key in ("acme-writer", "acme-admin"):
        await expect_error(
            admin.SetMaintenance(admin_pb.SetMaintenanceRequest(enabled=True), metadata=auth(key)),
            grpc.StatusCode.PERMISSION_DENIED,
            "ROLE_REQUIRED",
        )
    reply = await admin.SetMaintenance(
        admin_pb.SetMaintenanceRequest(enabled=True, message="back at 14:00"),
        metadata=auth("acme-operator"),
    )
    assert reply.enabled
    try:
        error = await expect_error(
            public.query.Query(pb.QueryRequest(question="tides"), metadata=READER),
            grpc.StatusCode.UNAVAILABLE,
            "MAINTENANCE",
        )
        assert "back at 14:00" in error.details()
        status = await health.Check(health_pb2.HealthCheckRequest(service="rag.v1.QueryService"))
        assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING
        details = await health_grpc.HealthDetailsServiceStub(public.channel).GetHealthDetails(
            health_details_pb.GetHealthDetailsRequest(), metadata=auth("acme-operator")
        )
        assert details.state == health_details_pb.HEALTH_STATE_UNHEALTHY
    finally:
        await admin.SetMaintenance(
            admin_pb.SetMaintenanceRequest(enabled=False), metadata=auth("acme-operator")
        )
    status = await health.Check(health_pb2.HealthCheckRequest(service="rag.v1.QueryService"))
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    reply = await public.query.Query(pb.QueryRequest(question="tides"), metadata=READER)
    assert reply.sources


async def test_health_details_list_each_dependency_with_its_breaker(public):
    details = await health_grpc.HealthDetailsServiceStub(public.channel).GetHealthDetails(
        health_details_pb.GetHealthDetailsRequest(), metadata=auth("acme-operator")
    )
    assert details.service == "query"
    by_name = {d.name: d for d in details.dependencies}
    assert set(by_name) == {"embedding", "retrieval", "generation"}
    assert all(d.breaker == "closed" and d.latency_ms > 0 for d in by_name.values())
    assert all(d.state == health_details_pb.HEALTH_STATE_HEALTHY for d in by_name.values())
    # Earlier tests of this module made calls fail on purpose: the signals judge those too
    # (test_health_signals.py covers each one's thresholds).
    assert [s.name for s in details.signals] == [
        "p95_latency_s",
        "error_rate",
        "cache_hit_rate",
        "cpu",
        "memory",
    ]


async def test_a_repeated_question_is_answered_from_the_exact_cache(public):
    first = await public.query.Query(
        pb.QueryRequest(question="What causes tides?"), metadata=READER
    )
    again = await public.query.Query(
        pb.QueryRequest(question="  what CAUSES tides?"), metadata=READER
    )
    assert (first.cache, again.cache) == ("", "exact")
    assert again.text == first.text
    assert [s.document_id for s in again.sources] == [s.document_id for s in first.sources]
    other_options = await public.query.Query(
        pb.QueryRequest(question="What causes tides?", options=pb.QueryOptions(top_k=1)),
        metadata=READER,
    )
    assert other_options.cache == ""


async def test_no_tenant_ever_gets_another_tenants_cached_answer(public):
    await public.query.Query(pb.QueryRequest(question="How do bees talk?"), metadata=READER)
    globex = await public.query.Query(
        pb.QueryRequest(question="How do bees talk?"), metadata=auth("globex-writer")
    )
    assert globex.cache == "" and "dancing" not in globex.text
    assert globex.sources == []


async def test_changed_documents_are_never_answered_from_a_stale_cache(public):
    async def ingest(text: str) -> None:
        await public.documents.IngestDocuments(
            doc_pb.IngestDocumentsRequest(
                documents=[common_pb2.Document(id="opening-hours", text=text)]
            ),
            metadata=WRITER,
        )

    question = pb.QueryRequest(question="When does the museum open?")
    await ingest("The museum opens at nine in the morning.")
    before = await public.query.Query(question, metadata=READER)
    assert "nine" in before.text
    assert (await public.query.Query(question, metadata=READER)).cache == "exact"
    await ingest("The museum opens at eleven in the morning.")
    after = await public.query.Query(question, metadata=READER)
    assert after.cache == "" and "eleven" in after.text


async def test_a_paraphrase_is_answered_from_the_semantic_cache_but_a_near_miss_is_not(public):
    first = await public.query.Query(
        pb.QueryRequest(question="How do honey bees communicate?"), metadata=READER
    )
    paraphrase = await public.query.Query(
        pb.QueryRequest(question="How can honey bees communicate?"), metadata=READER
    )
    assert first.cache == "" and paraphrase.cache == "semantic"
    assert paraphrase.cached_question == "How do honey bees communicate?"
    assert paraphrase.cache_similarity >= 0.95 and paraphrase.text == first.text
    near_miss = await public.query.Query(
        pb.QueryRequest(question="How do honey bees not communicate?"), metadata=READER
    )
    assert near_miss.cache == ""
    other_tenant = await public.query.Query(
        pb.QueryRequest(question="How can honey bees communicate?"),
        metadata=auth("globex-writer"),
    )
    assert other_tenant.cache == "" and other_tenant.sources == []


async def breakers(public) -> dict[str, str]:
    details = await health_grpc.HealthDetailsServiceStub(public.channel).GetHealthDetails(
        health_details_pb.GetHealthDetailsRequest(), metadata=auth("acme-operator")
    )
    return {d.name: d.breaker for d in details.dependencies}


@pytest.mark.parametrize("key", [".", "a..b", "lang\n", "meta.lang"])
async def test_a_filter_key_the_store_cannot_use_is_the_callers_mistake(public, expect_error, key):
    condition = common_pb2.FilterCondition(
        key=key, operator=common_pb2.FILTER_OPERATOR_EQUALS, values=["en"]
    )
    request = pb.QueryRequest(
        question="What causes tides?", options=pb.QueryOptions(filters=[condition])
    )
    for _ in range(8):  # more than it takes to open a breaker, were they counted
        await expect_error(
            public.query.Query(request, metadata=READER), INVALID, field="options.filters[0].key"
        )
    assert set((await breakers(public)).values()) == {"closed"}
    reply = await public.query.Query(
        pb.QueryRequest(question="What causes tides?"), metadata=READER
    )
    assert not reply.degraded and reply.sources


async def test_an_oversized_metadata_key_gets_its_error_reply(public, expect_error):
    document = common_pb2.Document(id="big-key", text="Some text.", metadata={"k" * 5000: "v"})
    error = await expect_error(
        public.documents.IngestDocuments(
            doc_pb.IngestDocumentsRequest(documents=[document]), metadata=WRITER
        ),
        INVALID,
        field="documents[0].metadata",
    )
    assert len(error.details()) < 1100
    assert set((await breakers(public)).values()) == {"closed"}


async def test_a_document_id_with_a_trailing_newline_is_refused(public, expect_error):
    document = common_pb2.Document(id="notes\n", text="Some text.")
    await expect_error(
        public.documents.IngestDocuments(
            doc_pb.IngestDocumentsRequest(documents=[document]), metadata=WRITER
        ),
        INVALID,
        field="documents[0].id",
    )


async def test_bytes_that_are_no_request_are_invalid_not_unknown(public, expect_error):
    raw = public.channel.unary_unary(
        "/rag.v1.QueryService/Query",
        request_serializer=lambda data: data,
        response_deserializer=lambda data: data,
    )
    garbage = b"\xff\xff\xff\xff\x0f\x08"
    await expect_error(raw(garbage, metadata=READER), INVALID, field="request")
    await expect_error(raw(garbage), grpc.StatusCode.UNAUTHENTICATED)  # no key: that first


async def test_a_message_past_the_public_limit_is_refused_before_it_is_read(public):
    huge = pb.QueryRequest(question="x" * (9 * 1024 * 1024))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await public.query.Query(huge, metadata=READER)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    reply = await public.query.Query(
        pb.QueryRequest(question="What causes tides?"), metadata=READER
    )
    assert reply.sources


async def test_a_flood_of_bad_requests_writes_a_log_line_a_second_not_one_each(public, caplog):
    raw = public.channel.unary_unary(
        "/rag.v1.QueryService/Query",
        request_serializer=lambda data: data,
        response_deserializer=lambda data: data,
    )
    caplog.set_level(logging.INFO, logger="rag_common.server.outcomes")
    await asyncio.sleep(1.1)  # past any line an earlier test's bad request may have written
    for _ in range(40):
        with pytest.raises(grpc.aio.AioRpcError):
            await raw(b"\xff\xff\xff", metadata=READER)
    lines = [r for r in caplog.records if getattr(r, "code", "") == "INVALID_ARGUMENT"]
    assert 1 <= len(lines) <= 2, len(lines)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_request_id_that_is_no_id_is_replaced_not_echoed(public):
    for given, kept in (("trace-42", True), ("x" * 4000, False), ("id with spaces", False)):
        reply = await public.query.Query(
            pb.QueryRequest(question="What causes tides?"),
            metadata=[*READER, ("x-request-id", given)],
        )
        assert (reply.request_id == given) is kept
        assert 0 < len(reply.request_id) <= 64


async def test_the_reverse_question_is_not_answered_with_the_first_ones_answer(public):
    faq = [
        ("to-number", "To convert a string to a number, call int() on the string."),
        ("to-string", "To convert a number to a string, call str() on the number."),
    ]
    await public.documents.IngestDocuments(
        doc_pb.IngestDocumentsRequest(
            documents=[common_pb2.Document(id=i, text=t) for i, t in faq]
        ),
        metadata=WRITER,
    )
    first = await public.query.Query(
        pb.QueryRequest(question="How do I convert a string to a number?"), metadata=READER
    )
    second = await public.query.Query(
        pb.QueryRequest(question="How do I convert a number to a string?"), metadata=READER
    )
    assert first.cache == "" and second.cache == ""
    assert second.sources[0].document_id == "to-string"
