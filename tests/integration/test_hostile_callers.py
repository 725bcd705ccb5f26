"""The suite as separate processes, attacked as a stranger or a careless reader would.

Each test is one finding of an attack on the running suite: keyless reflection streams
taking every call slot, short deadlines opening breakers every tenant shares, huge keyless
messages read before the credential is checked, cancelled streams logging tracebacks, and
the embedding cache telling one tenant what another asked.
"""

from __future__ import annotations

import asyncio
import json
import statistics
from pathlib import Path

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2_grpc

from rag.v1 import common_pb2
from rag.v1 import document_service_pb2 as doc_pb
from rag.v1 import document_service_pb2_grpc as doc_grpc
from rag.v1 import embedding_service_pb2 as embedding_pb
from rag.v1 import embedding_service_pb2_grpc as embedding_grpc
from rag.v1 import query_service_pb2 as pb
from rag.v1 import query_service_pb2_grpc as pb_grpc
from rag_cli.launcher import LocalCluster

KEYS = {
    "reader-a": {"tenant": "tenant-a", "roles": ["reader"]},
    "writer-b": {"tenant": "tenant-b", "roles": ["writer"]},
    "reader-b": {"tenant": "tenant-b", "roles": ["reader"]},
}
DOCUMENTS = {
    "tides": "Spring tides happen twice a month, when the sun and the moon line up.",
    "kelp": "Kelp forests grow up to half a metre a day in cold, nutrient-rich water.",
}

pytestmark = pytest.mark.slow


def auth(key: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory):
    cluster = LocalCluster.on_free_ports(
        tmp_path_factory.mktemp("attacked"),
        # Generous fair-use limits: these tests attack the suite, not its rate limits.
        env={"RAG_QUERY_API_KEYS": json.dumps(KEYS), "RAG_QUERY_BUSY_SHED_THRESHOLD": "1"},
    )
    cluster.start()
    try:
        await cluster.wait_serving(within_s=240)
        async with grpc.aio.insecure_channel(cluster.address("query")) as channel:
            await doc_grpc.DocumentServiceStub(channel).IngestDocuments(
                doc_pb.IngestDocumentsRequest(
                    documents=[common_pb2.Document(id=i, text=t) for i, t in DOCUMENTS.items()]
                ),
                metadata=auth("writer-b"),
                timeout=60,
            )
        yield cluster
    finally:
        cluster.stop()


async def ask(channel: grpc.aio.Channel, key: str, question: str, timeout: float = 30):
    request = pb.QueryRequest(question=question, options=pb.QueryOptions(provider="extractive"))
    return await pb_grpc.QueryServiceStub(channel).Query(
        request, metadata=auth(key), timeout=timeout
    )


async def outcomes(calls) -> list[str]:
    """The status code name each call ended with ("OK" for an answer)."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    return [r.code().name if isinstance(r, grpc.aio.AioRpcError) else "OK" for r in results]


@pytest.mark.parametrize("service", ["query", "retrieval"])
async def test_idle_keyless_reflection_streams_leave_other_callers_their_slots(cluster, service):
    """300 reflection streams opened with no key and never used: past the keyless share
    they are refused at once, every query of another tenant is answered, and the streams
    that were let in are closed once idle."""
    channels = [grpc.aio.insecure_channel(cluster.address(service)) for _ in range(3)]
    streams = []
    try:
        for channel in channels:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            streams += [stub.ServerReflectionInfo() for _ in range(100)]
        await asyncio.sleep(1.0)  # every stream has reached the server
        async with grpc.aio.insecure_channel(cluster.address("query")) as public:
            answered = []
            for wave in range(5):  # 8 at a time: within the tenant's own concurrency limit
                answered += await outcomes(
                    ask(public, "reader-b", f"How fast does kelp grow? ({wave}.{n})")
                    for n in range(8)
                )
        ended = [s for s in streams if s.done()]
        held = [s for s in streams if not s.done()]
        print(
            f"\n{service}: 300 keyless reflection streams, {len(held)} held, {len(ended)} "
            f"refused; another tenant's queries answered {answered.count('OK')} of 40"
        )
        assert answered == ["OK"] * 40
        assert len(held) <= 32  # 256 slots, an eighth of them for keyless calls
        assert {await s.code() for s in ended} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
        await asyncio.sleep(11)  # the keyless idle limit, 10 s
        assert all(s.done() for s in held)
    finally:
        for stream in streams:
            stream.cancel()
        for channel in channels:
            await channel.close()


async def test_a_readers_short_deadlines_open_no_breaker_for_other_tenants(cluster):
    """Eight questions from one reader with a 15 ms gRPC deadline, as the finding sent
    them; another tenant's question right after is answered normally."""
    async with grpc.aio.insecure_channel(cluster.address("query")) as public:
        codes = [
            (await outcomes([ask(public, "reader-a", f"Spring tides, take {n}?", 0.015)]))[0]
            for n in range(8)
        ]
        reply = await ask(public, "reader-b", "What causes spring tides?")
        print(
            f"\n15 ms deadlines: {codes}; the other tenant's answer degraded={list(reply.degraded)}"
        )
    assert not reply.degraded
    assert "sun and the moon" in reply.text


def rss_mb(cluster: LocalCluster, service: str) -> float:
    status = Path(f"/proc/{cluster.processes[service].pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if "VmRSS" in line)) / 1024


async def test_huge_keyless_messages_are_refused_without_being_read(cluster):
    """Embed calls of 60 texts of 1 MB with no credential, 8 at once, three rounds (the
    finding's attack), then 15 MB ones, under the size cap: each refused from its metadata
    alone, before its message is read."""
    before = rss_mb(cluster, "embedding")
    async with grpc.aio.insecure_channel(
        cluster.address("embedding"),
        options=[("grpc.max_send_message_length", 128 * 1024 * 1024)],
    ) as channel:
        stub = embedding_grpc.EmbeddingServiceStub(channel)
        for texts in (["x" * 1_000_000] * 60, ["x" * 1_000_000] * 15):
            for _ in range(3):
                codes = await outcomes(
                    stub.Embed(embedding_pb.EmbedRequest(texts=texts), timeout=30) for _ in range(8)
                )
                assert set(codes) == {"UNAUTHENTICATED"}
    grown = rss_mb(cluster, "embedding") - before
    print(
        f"\nembedding RSS {before:.0f} MB before 48 keyless calls of 15-60 MB, +{grown:.0f} after"
    )
    # Was 1,126 MB; then 170-400 MB while gRPC's bandwidth probe widened each stream's
    # window; about 2 MB with fixed 64 KB windows. Room left for a process still warming up.
    assert grown < 100, f"embedding grew by {grown:.0f} MB"


async def test_cancelled_streams_log_no_traceback(cluster):
    """StreamQuery calls cancelled after their first message, cache hits and misses."""
    async with grpc.aio.insecure_channel(cluster.address("query")) as public:
        stub = pb_grpc.QueryServiceStub(public)
        for n in range(60):
            question = "How fast does kelp grow?" if n % 2 else f"Kelp, question {n}?"
            call = stub.StreamQuery(
                pb.StreamQueryRequest(
                    question=question, options=pb.QueryOptions(provider="extractive")
                ),
                metadata=auth("reader-b"),
                timeout=30,
            )
            async for _ in call:
                break
            call.cancel()
        await asyncio.sleep(1.0)
    log = (cluster.log_dir / "query.log").read_text()
    assert "Task exception was never retrieved" not in log
    assert "Traceback" not in log


async def test_the_embedding_time_of_a_question_says_nothing_of_other_tenants(cluster):
    """Tenant B asks questions; tenant A then asks the same ones, and new ones. The
    embedding time A sees is the same for both: A cannot tell what B asked. (A's own
    repeats, with other options so no answer is cached, are faster: the measurement can
    see a cached embedding when there is one to see.)"""

    async def embed_ms(key: str, question: str, top_k: int = 0) -> float:
        request = pb.QueryRequest(
            question=question, options=pb.QueryOptions(provider="extractive", top_k=top_k)
        )
        reply = await pb_grpc.QueryServiceStub(public).Query(
            request, metadata=auth(key), timeout=30
        )
        return reply.timings.embed_ms

    async with grpc.aio.insecure_channel(cluster.address("query")) as public:
        asked_by_b = [f"Which animal sleeps standing up, number {n}?" for n in range(20)]
        for question in asked_by_b:
            await embed_ms("reader-b", question)
        same = [await embed_ms("reader-a", q) for q in asked_by_b]
        new = [await embed_ms("reader-a", f"Which bird migrates furthest, {n}?") for n in range(20)]
        repeated = [await embed_ms("reader-a", q, top_k=3) for q in asked_by_b]
    print(
        f"\nembed_ms medians seen by tenant A: B's questions {statistics.median(same):.1f}, "
        f"new ones {statistics.median(new):.1f}, A's own repeats {statistics.median(repeated):.1f}"
    )
    assert statistics.median(repeated) < 0.7 * statistics.median(new)
    assert statistics.median(same) > 0.7 * statistics.median(new)
