"""Replicas behind client-side round-robin: a crashed one costs no request, a new one gets
its share within seconds.

Two replicas each of query, embedding and generation run as processes; callers (and the
load's own client) balance over every address with gRPC's round_robin and its retry of
UNAVAILABLE. One replica of each is SIGKILLed with calls in flight: no request fails. Then
a replica that was listed but not running starts under load, and the share of embedding
calls it serves is sampled from every replica's /metrics until it is fair.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import urllib.request
from collections import Counter

import grpc
import pytest

from rag.v1 import common_pb2
from rag.v1 import document_service_pb2 as doc_pb
from rag.v1 import document_service_pb2_grpc as doc_grpc
from rag.v1 import query_service_pb2 as pb
from rag.v1 import query_service_pb2_grpc as pb_grpc
from rag_cli.launcher import LocalCluster
from rag_common.client.channel import open_channel

pytestmark = pytest.mark.slow

KEY = "scale-key"
AUTH = [("authorization", f"Bearer {KEY}")]
CONCURRENCY = 8
PHASE_S = 4.0
KILL_AT_S = 1.0
EMBED = "/rag.v1.EmbeddingService/Embed"
_UNIQUE = itertools.cycle(range(64, 4096))


@pytest.fixture(scope="module")
async def replicas(tmp_path_factory):
    cluster = LocalCluster.on_free_ports(tmp_path_factory.mktemp("scale"))
    names = {s: [s, cluster.add_replica(s)] for s in ("query", "embedding", "generation")}
    spare = cluster.add_replica("embedding")  # listed by callers, started later
    embedders = [*names["embedding"], spare]
    metrics = {name: cluster.metrics_ports[name] for name in embedders}
    addresses = {s: ",".join(cluster.address(n) for n in names[s]) for s in names}
    every_embedder = ",".join(cluster.address(n) for n in embedders)
    cluster.env.update(
        {
            "RAG_QUERY_API_KEYS": json.dumps({KEY: {"tenant": "scale", "roles": ["writer"]}}),
            "RAG_GENERATION_PROVIDERS": json.dumps(["extractive"]),
            "RAG_QUERY_EMBEDDING_TARGET": every_embedder,
            "RAG_RETRIEVAL_EMBEDDING_TARGET": every_embedder,
            "RAG_QUERY_GENERATION_TARGET": addresses["generation"],
        }
    )
    started = [n for group in names.values() for n in group] + ["retrieval"]
    cluster.start(tuple(started))
    try:
        await cluster.wait_serving(within_s=240)
        yield cluster, names, spare, metrics, addresses["query"]
    finally:
        cluster.stop()


async def load(stub, seconds: float, during=None) -> Counter:
    """Outcomes of CONCURRENCY clients asking for `seconds`; `during` runs KILL_AT_S in."""
    outcomes: Counter = Counter()
    end = time.monotonic() + seconds

    async def client(n: int) -> None:
        while time.monotonic() < end:
            request = pb.QueryRequest(
                question=f"What is the policy on topic {n}?",
                options=pb.QueryOptions(budget_ms=3000, max_tokens=next(_UNIQUE)),
            )
            try:
                reply = await stub.Query(request, metadata=AUTH, timeout=5)
                outcomes[",".join(reply.degraded) or "normal"] += 1
            except grpc.aio.AioRpcError as exc:
                outcomes[f"failed {exc.code().name}"] += 1

    async def act() -> None:
        await asyncio.sleep(KILL_AT_S)
        during()

    await asyncio.gather(*(client(n) for n in range(CONCURRENCY)), *([act()] if during else []))
    return outcomes


def embed_calls(port: int) -> float:
    """Embed calls a replica has served, from its /metrics (0 while it is down)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
            text = reply.read().decode()
    except OSError:
        return 0.0
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("rag_request_duration_seconds_count") and EMBED in line
    )


async def test_a_killed_replica_costs_no_request_and_a_new_one_gets_its_share(replicas, capsys):
    cluster, names, spare, metrics, query_addresses = replicas
    channel = open_channel(query_addresses)  # round_robin and UNAVAILABLE retry, as callers do
    try:
        stub = pb_grpc.QueryServiceStub(channel)
        await doc_grpc.DocumentServiceStub(channel).IngestDocuments(
            doc_pb.IngestDocumentsRequest(
                documents=[
                    common_pb2.Document(id=f"t{n}", text=f"The policy on topic {n} is lenient.")
                    for n in range(CONCURRENCY)
                ]
            ),
            metadata=AUTH,
            timeout=60,
        )
        rows = [("baseline", await load(stub, PHASE_S))]
        for service in ("query", "embedding", "generation"):
            victim = names[service][1]
            outcomes = await load(stub, PHASE_S, lambda v=victim: cluster.kill((v,)))
            rows.append((f"{victim} SIGKILL, calls in flight", outcomes))
            assert not [o for o in outcomes if o.startswith("failed")], (victim, outcomes)
            assert outcomes["normal"] > 0, (victim, outcomes)

        # Scale out: the spare (already listed by every caller) starts under load.
        shares: list[tuple[float, float]] = []
        survivor = names["embedding"][0]

        async def sample() -> None:
            previous = {n: embed_calls(metrics[n]) for n in (survivor, spare)}
            started = time.monotonic()
            while time.monotonic() - started < 10:
                await asyncio.sleep(0.5)
                now = {n: await asyncio.to_thread(embed_calls, metrics[n]) for n in previous}
                delta = {n: now[n] - previous[n] for n in now}
                total = sum(delta.values())
                shares.append((time.monotonic() - started, delta[spare] / total if total else 0))
                previous = now

        cluster.start((spare,))
        ready = asyncio.ensure_future(cluster.wait_serving(within_s=120))
        outcomes, _ = await asyncio.gather(load(stub, 6.0), ready)
        rows.append((f"{spare} started", outcomes))
        assert not [o for o in outcomes if o.startswith("failed")], outcomes
        serving_at = time.monotonic()
        await asyncio.gather(load(stub, 10.5), sample())
        fair_after = next((t for t, share in shares if share >= 0.3), None)
        with capsys.disabled():
            print()
            for name, counts in rows:
                print(f"{name:<40}{dict(counts)}")
            print("share of embedding calls served by the new replica, after it was SERVING:")
            print("  " + "  ".join(f"{t:.1f}s {share:.0%}" for t, share in shares))
        assert fair_after is not None and fair_after <= 3.0, shares
        assert time.monotonic() - serving_at < 30
    finally:
        await channel.close()
