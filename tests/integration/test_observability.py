"""Traces and metrics of the four services as processes, as an operator would see them.

Spans go through the real OTLP exporter to a local collector; metrics are scraped from each
process's /metrics. One question must make one connected trace across all four services,
and a query, a cache hit, a caller's mistake and a provider failure must each move the
numbers a dashboard or an alert reads.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rag.v1 import common_pb2
from rag.v1 import document_service_pb2 as doc_pb
from rag.v1 import document_service_pb2_grpc as doc_grpc
from rag.v1 import query_service_pb2 as pb
from rag.v1 import query_service_pb2_grpc as pb_grpc
from rag_cli.advise import READS, Metrics
from rag_cli.launcher import SERVICES, LocalCluster
from tests.deploy.monitoring import referenced_metric_names
from tests.support.fake_llm import FakeLLMServer
from tests.support.fake_otlp import FakeCollector

pytestmark = pytest.mark.slow

KEY = "observer-key"
TENANT = "observatory"
AUTH = [("authorization", f"Bearer {KEY}")]
DOCS = {
    "tides": "Tides are caused by the gravitational pull of the Moon and the Sun on the oceans.",
    "coral": "Coral reefs grow slowly, a few centimetres a year, in warm shallow seas.",
}
SERVER_SPAN = 2  # SpanKind.SERVER in OTLP


@pytest.fixture(scope="module")
async def observed(tmp_path_factory):
    collector = FakeCollector().start()
    llm = FakeLLMServer().start()
    primary = {
        "name": "primary",
        "kind": "openai",
        "model": "gpt-test",
        "base_url": f"{llm.url}/v1",
        "price_input_per_mtok": 2.0,
        "price_output_per_mtok": 8.0,
        "timeout_s": 2.0,
    }
    cluster = LocalCluster.on_free_ports(tmp_path_factory.mktemp("observed"))
    cluster.env.update(
        {
            "RAG_QUERY_API_KEYS": json.dumps({KEY: {"tenant": TENANT, "roles": ["writer"]}}),
            "RAG_GENERATION_PROVIDERS": json.dumps([primary, "extractive"]),
            # The provider failures these tests cause must not open its breaker: they look
            # at what the failures leave in traces and counters.
            "RAG_GENERATION_BREAKER_CONSECUTIVE_FAILURES": "50",
            "RAG_GENERATION_BREAKER_FAILURE_RATE": "1.0",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
            "OTEL_BSP_SCHEDULE_DELAY": "100",  # ms: spans reach the collector quickly
        }
    )
    cluster.start()
    channel = grpc.aio.insecure_channel(cluster.address("query"))
    try:
        await cluster.wait_serving(within_s=240)
        documents = [common_pb2.Document(id=i, text=t, title=i) for i, t in DOCS.items()]
        await doc_grpc.DocumentServiceStub(channel).IngestDocuments(
            doc_pb.IngestDocumentsRequest(documents=documents), metadata=AUTH, timeout=60
        )
        yield cluster, collector, llm, pb_grpc.QueryServiceStub(channel)
    finally:
        await channel.close()
        cluster.stop()
        llm.stop()
        collector.stop()


async def whole_trace(collector: FakeCollector, request_id: str, within_s: float = 15.0):
    """The spans of the trace whose Query span carries `request_id`, once all four
    services have sent theirs."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        roots = [s for s in collector.spans if s.attributes.get("rag.request_id") == request_id]
        if roots:
            spans = collector.trace(roots[0].trace_id)
            if {s.service for s in spans} >= {f"rag-{s}" for s in SERVICES}:
                await asyncio.sleep(0.5)  # the rest of the batch
                return collector.trace(roots[0].trace_id)
        await asyncio.sleep(0.2)
    raise AssertionError(
        f"no whole trace for {request_id}: {sorted({s.service for s in collector.spans})}"
    )


async def test_one_question_is_one_connected_trace_across_the_four_services(observed):
    cluster, collector, _, query = observed
    reply = await query.Query(
        pb.QueryRequest(question="What causes the tides?"), metadata=AUTH, timeout=30
    )
    assert reply.sources
    spans = await whole_trace(collector, reply.request_id)
    ids = {s.span_id for s in spans}
    roots = [s for s in spans if not s.parent_id]
    assert [r.name for r in roots] == ["/rag.v1.QueryService/Query"]
    assert all(s.parent_id in ids for s in spans if s.parent_id), "a span's parent is missing"
    servers = {s.service: s for s in spans if s.kind == SERVER_SPAN}
    assert set(servers) == {f"rag-{s}" for s in SERVICES}
    assert {s.attributes["rpc.grpc.status_code"] for s in servers.values()} == {0}  # OK
    assert servers["rag-retrieval"].attributes["rpc.service"] == "rag.v1.RetrievalService"

    by_name = {s.name: s for s in spans}
    assert by_name["cache.answer"].attributes["rag.hit"] is False
    assert by_name["cache.semantic"].attributes["rag.hit"] is False
    embed = [s for s in spans if s.name == "/rag.v1.EmbeddingService/Embed" and s.kind == 2]
    assert embed[0].attributes["rag.batch_size"] >= 1
    search = by_name["store.search"].attributes
    assert search["rag.top_k"] == 5 and search["rag.hits"] == len(reply.sources)
    attempt = by_name["llm.attempt"].attributes
    assert attempt["rag.provider"] == "primary" and attempt["rag.model"] == "gpt-test"
    assert attempt["rag.retry"] == 0 and attempt["rag.breaker"] == "closed"
    assert attempt["rag.input_tokens"] == 42 and attempt["rag.cost_usd"] > 0

    # Log lines carry the ids of the span they were written in.
    trace_id = roots[0].trace_id
    logged = (cluster.log_dir / "generation.log").read_text()
    assert f'"trace_id": "{trace_id}"' in logged


async def test_a_degraded_answer_shows_its_decision_in_the_trace(observed):
    _, collector, llm, query = observed
    llm.mode = "error500"
    try:
        reply = await query.Query(
            pb.QueryRequest(question="How fast do coral reefs grow?"), metadata=AUTH, timeout=30
        )
    finally:
        llm.mode = "ok"
    assert reply.text and reply.provider == "extractive"  # the fallback took over
    spans = await whole_trace(collector, reply.request_id)
    attempts = [s for s in spans if s.name == "llm.attempt"]
    assert {a.attributes["rag.provider"] for a in attempts} == {"primary", "extractive"}
    retries = sorted(
        a.attributes["rag.retry"] for a in attempts if a.attributes["rag.provider"] == "primary"
    )
    assert retries[0] == 0 and retries[-1] >= 1  # a 500 is retried before moving on
    generate = next(
        s for s in spans if s.name == "/rag.v1.GenerationService/Generate" and s.kind == 2
    )
    assert generate.attributes["rag.failed_providers"] == ["primary"]


async def test_a_collector_that_is_down_costs_the_answers_nothing(observed):
    _, collector, _, query = observed
    collector.failing = True
    try:
        for number in range(5):
            reply = await query.Query(
                pb.QueryRequest(question=f"Tides and the Moon, take {number}"),
                metadata=AUTH,
                timeout=30,
            )
            assert reply.text
        deadline = time.monotonic() + 10
        while collector.refused == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert collector.refused > 0  # the exporter did try, and failed, in the background
    finally:
        collector.failing = False


def scrape_texts(cluster: LocalCluster) -> list[tuple[str, str]]:
    texts = []
    for service in SERVICES:
        with urllib.request.urlopen(cluster.metrics_url(service), timeout=5) as reply:
            texts.append((service, reply.read().decode()))
    return texts


def scrape(cluster: LocalCluster) -> Metrics:
    return Metrics.parse(scrape_texts(cluster))


def exported_names(texts: list[tuple[str, str]]) -> set[str]:
    """Every series name the services export, with or without samples yet."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    names = set()
    for _, text in texts:
        for family in text_string_to_metric_families(text):
            names.add(family.name)
            names |= {family.name + s for s in suffixes.get(family.type, ())}
            names |= {sample.name for sample in family.samples}
    return names


async def test_each_endpoint_moves_after_a_query_a_cache_hit_a_bad_call_and_a_fault(observed):
    cluster, _, llm, query = observed
    before = await asyncio.to_thread(scrape, cluster)
    question = pb.QueryRequest(question="Why do coral reefs grow slowly?")
    await query.Query(question, metadata=AUTH, timeout=30)
    await query.Query(question, metadata=AUTH, timeout=30)  # an exact hit
    with pytest.raises(grpc.aio.AioRpcError):
        await query.Query(pb.QueryRequest(question=" "), metadata=AUTH, timeout=30)
    llm.mode = "error500"
    try:
        await query.Query(
            pb.QueryRequest(question="Coral in cold seas?"), metadata=AUTH, timeout=30
        )
    finally:
        llm.mode = "ok"
    after = await asyncio.to_thread(scrape, cluster)

    def moved(name: str, service: str, **labels: str) -> float:
        return after.total(name, service, **labels) - before.total(name, service, **labels)

    query_calls = "rag_request_duration_seconds_count"
    assert moved(query_calls, "query", method="/rag.v1.QueryService/Query") == 4
    assert moved("rag_cache_requests_total", "query", layer="answer", result="exact_hit") == 1
    assert moved("rag_cache_requests_total", "query", layer="answer", result="miss") == 2
    assert (
        moved("rag_errors_total", "query", code="INVALID_ARGUMENT", reason="INVALID_ARGUMENT") == 1
    )
    assert moved("rag_query_stage_duration_seconds_count", "query", stage="embed") == 2
    assert moved(query_calls, "embedding", method="/rag.v1.EmbeddingService/Embed") >= 2
    assert moved("rag_embedding_batch_size_count", "embedding") >= 2
    encode_seconds = "rag_embedding_encode_seconds_count"
    assert moved(encode_seconds, "embedding", lane="query") == moved(
        "rag_embedding_batch_size_count", "embedding", lane="query"
    )
    assert moved("rag_embedding_encode_seconds_sum", "embedding", lane="query") > 0
    assert moved(query_calls, "retrieval", method="/rag.v1.RetrievalService/Retrieve") == 2
    assert moved("rag_llm_answers_total", "generation", provider="primary", tenant=TENANT) == 1
    assert moved("rag_llm_answers_total", "generation", provider="extractive", tenant=TENANT) == 1
    assert moved("rag_llm_tokens_total", "generation", provider="primary", kind="input") == 42
    assert moved("rag_llm_cost_usd_total", "generation", provider="primary") > 0
    assert moved("rag_llm_provider_failures_total", "generation", provider="primary") == 1
    # Breakers per dependency, and the process, on every service.
    for service in SERVICES:
        assert after.total("process_resident_memory_bytes", service) > 0
        assert after.total("rag_process_cpus", service) >= 1
        signals = after.by("signal", "rag_health_signal", service)
        assert {"p95_latency_s", "error_rate", "cpu", "memory"} <= set(signals)
    dependencies = after.by("dependency", "rag_breaker_state", "query", state="closed")
    assert dependencies == {"embedding": 1.0, "retrieval": 1.0, "generation": 1.0}
    providers = after.by("dependency", "rag_breaker_state", "generation", state="closed")
    assert set(providers) == {"provider:primary", "provider:extractive"}


async def test_rules_dashboard_and_advisor_only_read_metrics_the_services_export(observed):
    cluster, _, _, _ = observed
    exported = exported_names(await asyncio.to_thread(scrape_texts, cluster))
    referenced = referenced_metric_names() | set(READS)
    missing = sorted(name for name in referenced if name not in exported)
    assert missing == []
