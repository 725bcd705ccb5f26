"""All four services as separate processes, with the real model and the real Qdrant engine."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from rag.v1 import common_pb2
from rag.v1 import document_service_pb2 as doc_pb
from rag.v1 import document_service_pb2_grpc as doc_grpc
from rag.v1 import health_details_service_pb2 as health_pb
from rag.v1 import health_details_service_pb2_grpc as health_grpc
from rag.v1 import query_service_pb2 as pb
from rag.v1 import query_service_pb2_grpc as pb_grpc
from rag_cli.launcher import LocalCluster
from rag_common.security.credentials import OPERATOR_CLI
from rag_common.status import error_info
from tests.support.fake_llm import FakeLLMServer

KEYS = {
    "acme-key": {"tenant": "acme", "roles": ["writer"]},
    "globex-key": {"tenant": "globex", "roles": ["writer"]},
    "demo-key": {"tenant": "demo", "roles": ["writer"]},
    "ops-key": {"tenant": "demo", "roles": ["operator"]},
}
ACME_DOCS = {
    "handbook": "Employees at Acme get 30 days of paid vacation every year.",
    "badges": "Acme security badges must be worn visibly at all times inside the building.",
}
GLOBEX_DOCS = {
    "handbook": "Globex staff receive 12 days of vacation, plus public holidays.",
    "rockets": "Globex builds reusable rockets that land on floating platforms.",
}

pytestmark = pytest.mark.slow


def auth(key: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory):
    cluster = LocalCluster.on_free_ports(
        tmp_path_factory.mktemp("cluster"), env={"RAG_QUERY_API_KEYS": json.dumps(KEYS)}
    )
    cluster.start()
    try:
        await cluster.wait_serving(within_s=240)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
async def public(cluster):
    channel = grpc.aio.insecure_channel(cluster.address("query"))
    query = pb_grpc.QueryServiceStub(channel)
    documents = doc_grpc.DocumentServiceStub(channel)
    for key, docs in (("acme-key", ACME_DOCS), ("globex-key", GLOBEX_DOCS)):
        await documents.IngestDocuments(
            doc_pb.IngestDocumentsRequest(
                documents=[common_pb2.Document(id=i, text=t) for i, t in docs.items()]
            ),
            metadata=auth(key),
            timeout=60,
        )
    yield query
    await channel.close()


async def ask(query, key: str, question: str, provider: str = "extractive") -> pb.QueryResponse:
    request = pb.QueryRequest(question=question, options=pb.QueryOptions(provider=provider))
    return await query.Query(request, metadata=auth(key), timeout=60)


async def test_each_tenant_is_answered_from_its_own_documents(public):
    acme = await ask(public, "acme-key", "How many vacation days do employees get?")
    assert acme.sources[0].document_id == "handbook"
    assert "30 days" in acme.text and "[1]" in acme.text
    globex = await ask(public, "globex-key", "How many vacation days do employees get?")
    assert globex.sources[0].document_id == "handbook"
    assert "12 days" in globex.text


@pytest.mark.parametrize(
    ("key", "foreign"),
    [("acme-key", GLOBEX_DOCS), ("globex-key", ACME_DOCS)],
)
async def test_no_tenant_ever_receives_the_other_tenants_documents(public, key, foreign):
    own = ACME_DOCS if key == "acme-key" else GLOBEX_DOCS
    for question in ["vacation days", "security badges", "reusable rockets", "Acme", "Globex"]:
        reply = await ask(public, key, question)
        for source in reply.sources:
            assert source.text == own[source.document_id]
        for text in foreign.values():
            assert text not in reply.text


async def test_the_local_model_answers_through_the_whole_pipeline(public):
    reply = await ask(
        public, "acme-key", "What must be worn inside the building?", provider="local"
    )
    assert reply.provider == "local"
    assert reply.text.strip()
    assert reply.sources[0].document_id == "badges"
    assert reply.timings.generate_ms > 0


def grpcurl(
    address: str, *command: str, flags: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "grpcurl"), "-plaintext", *flags, address, *command],
        capture_output=True,
        text=True,
        timeout=30,
    )


async def test_reflection_describes_the_public_services_and_nothing_internal(cluster):
    listed = grpcurl(cluster.address("query"), "list")
    assert listed.returncode == 0, listed.stderr
    assert "rag.v1.QueryService" in listed.stdout
    assert "rag.v1.DocumentService" in listed.stdout
    described = grpcurl(cluster.address("query"), "describe", "rag.v1.QueryService")
    assert described.returncode == 0 and "QueryRequest" in described.stdout
    for internal in ("rag.v1.RetrievalService", "rag.v1.GenerationService"):
        hidden = grpcurl(cluster.address("query"), "describe", internal)
        assert hidden.returncode != 0, f"the public port describes {internal}"


async def test_the_document_api_is_seen_and_called_like_every_other_method(cluster, public):
    described = grpcurl(cluster.address("query"), "describe", "rag.v1.DocumentService")
    assert "ListDocuments" in described.stdout and "GetDocument" in described.stdout
    admin = grpcurl(cluster.address("query"), "describe", "rag.v1.AdminService")
    assert "EraseTenantData" in admin.stdout
    listed = grpcurl(
        cluster.address("query"),
        "rag.v1.DocumentService/ListDocuments",
        flags=("-H", "authorization: Bearer acme-key", "-d", '{"page_size": 500}'),
    )
    assert listed.returncode == 0, listed.stderr
    assert '"document_id": "badges"' in listed.stdout


async def test_cli_ingests_a_folder_and_answers(cluster, tmp_path):
    folder = tmp_path / "notes"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "plants.md").write_text(
        "# Plants\n\nFerns reproduce with spores, not seeds.\n"
    )
    (folder / "skip.bin").write_bytes(b"\x00\x01")
    base = [
        sys.executable,
        "-c",
        "from rag_cli.main import main; main()",
        "--target",
        cluster.address("query"),
        "--api-key",
        "acme-key",
    ]
    ingest = subprocess.run(
        [*base, "ingest", str(folder)], capture_output=True, text=True, timeout=60
    )
    assert ingest.returncode == 0, ingest.stdout + ingest.stderr
    assert "ingested 1 files" in ingest.stdout
    answer = subprocess.run(
        [*base, "query", "How do ferns reproduce?", "--provider", "extractive"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert answer.returncode == 0, answer.stdout + answer.stderr
    assert "spores" in answer.stdout
    assert "[1] Plants" in answer.stdout
    listed = subprocess.run(
        [*base, "documents", "list", "--page-size", "500"], capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stdout + listed.stderr
    [document_id] = [w for w in listed.stdout.split() if w.endswith("plants.md")]
    shown = subprocess.run(
        [*base, "documents", "show", document_id], capture_output=True, text=True
    )
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "Plants" in shown.stdout and "sha256" in shown.stdout


async def test_the_demo_ingests_the_docs_and_answers_in_prose(cluster, capsys):
    # What `make run` does after the services are up (`rag up --demo`), on this cluster.
    from rag_cli.commands.local import DEMO_QUESTION, serve_cluster
    from rag_cli.main import parser

    args = parser().parse_args(
        ["--target", cluster.address("query"), "--api-key", "demo-key", "up", "--demo"]
    )
    session = asyncio.ensure_future(serve_cluster(cluster, args))
    printed = ""
    for _ in range(240):
        await asyncio.sleep(0.5)
        printed += capsys.readouterr().out
        if "serving; press Ctrl-C to stop" in printed or session.done():
            break
    session.cancel()
    assert "ingested" in printed and f"Q: {DEMO_QUESTION}" in printed, printed
    answer = printed.split(f"Q: {DEMO_QUESTION}")[1].split("Sources")[0]
    assert "[1]" in answer and "ingest" in answer.lower()
    for code in ("```", "make run", "$ ", "| --- |"):
        assert code not in answer, answer


async def test_a_dead_retrieval_service_degrades_then_recovers(cluster, public):
    asked = "How many vacation days do employees get?"
    assert not (await ask(public, "acme-key", asked)).degraded
    cluster.stop(("retrieval",))
    # The same question: the answer cache still has it, whole.
    cached = await ask(public, "acme-key", asked)
    assert cached.cache == "exact" and not cached.degraded
    # Same question, other options: no cached answer, but the sources it got before stand in.
    stand_in = await public.Query(
        pb.QueryRequest(
            question=asked, options=pb.QueryOptions(provider="extractive", max_tokens=99)
        ),
        metadata=auth("acme-key"),
        timeout=60,
    )
    assert stand_in.degraded == ["retrieval_cached"] and "30 days" in stand_in.text
    # A new question has nothing to fall back on: a clear UNAVAILABLE naming the dependency.
    new_question = "Where are the security badges worn?"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ask(public, "acme-key", new_question)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_info(caught.value).metadata["dependency"] == "retrieval"
    cluster.start(("retrieval",))
    await cluster.wait_serving(within_s=60)
    # The query service reconnects within its capped reconnect backoff (2 s) and its
    # breaker's recovery time (5 s); the documents survived the restart.
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        try:
            reply = await ask(public, "acme-key", new_question)
            break
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE
            assert asyncio.get_running_loop().time() < deadline, "no recovery within 15 s"
            await asyncio.sleep(0.2)
    assert not reply.degraded and reply.sources[0].document_id == "badges"


async def test_a_query_in_flight_completes_while_every_service_shuts_down(tmp_path):
    slow_llm = FakeLLMServer().start()
    slow_llm.hang_s = 2.0  # every answer takes 2 s: long enough to be in flight at SIGTERM
    slow_llm.reset("hang")
    provider = {"name": "slow", "kind": "openai", "model": "m", "base_url": f"{slow_llm.url}/v1"}
    cluster = LocalCluster.on_free_ports(
        tmp_path,
        env={
            "RAG_QUERY_API_KEYS": json.dumps(KEYS),
            "RAG_GENERATION_PROVIDERS": json.dumps([provider]),
        },
    )
    cluster.start()
    try:
        await cluster.wait_serving(within_s=240)
        async with grpc.aio.insecure_channel(cluster.address("query")) as channel:
            query = pb_grpc.QueryServiceStub(channel)
            documents = doc_grpc.DocumentServiceStub(channel)
            await documents.IngestDocuments(
                doc_pb.IngestDocumentsRequest(
                    documents=[common_pb2.Document(id=i, text=t) for i, t in ACME_DOCS.items()]
                ),
                metadata=auth("acme-key"),
                timeout=60,
            )
            request = pb.QueryRequest(question="What must be worn inside the building?")
            in_flight = asyncio.ensure_future(
                query.Query(request, metadata=auth("acme-key"), timeout=60)
            )
            await asyncio.sleep(0.5)
            assert not in_flight.done()
            stopping = asyncio.ensure_future(asyncio.to_thread(cluster.stop))
            reply = await in_flight
            assert reply.provider == "slow" and not reply.degraded
            assert reply.text == slow_llm.text
            await stopping
            with pytest.raises(grpc.aio.AioRpcError) as caught:  # and nothing new gets in
                await query.Query(request, metadata=auth("acme-key"), timeout=5)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        cluster.stop()
        slow_llm.stop()


def details_credential(cluster: LocalCluster, service: str) -> list[tuple[str, str]]:
    """An operator's: its API key on the public port, the suite's signature elsewhere."""
    if service == "query":
        return auth("ops-key")
    method = "/rag.v1.HealthDetailsService/GetHealthDetails"
    return cluster.credentials().metadata(service, OPERATOR_CLI, method=method)


async def test_every_service_reports_its_dependencies_healthy(cluster):
    for service in ("query", "retrieval", "generation", "embedding"):
        async with grpc.aio.insecure_channel(cluster.address(service)) as channel:
            stub = health_grpc.HealthDetailsServiceStub(channel)
            report = await stub.GetHealthDetails(
                health_pb.GetHealthDetailsRequest(), metadata=details_credential(cluster, service)
            )
        assert report.service == service
        states = {d.name: d.state for d in report.dependencies}
        assert states and set(states.values()) == {health_pb.HEALTH_STATE_HEALTHY}, states
        # With every dependency healthy, only an operating signal past its threshold (the
        # calls earlier tests failed on purpose count) can make the service worse.
        signals = {s.name: s.state for s in report.signals}
        assert {"p95_latency_s", "error_rate", "cpu", "memory"} <= set(signals)
        assert report.state == max(signals.values()), signals
