"""Faults injected into running processes under bounded load, then removed.

For each fault: queries answered normally, degraded (with the right reason) or failed (with
the right status); no process crashes; every answer within its budget plus a margin; and
normal answers again within the breaker recovery time once the fault is gone. Prints one
table of the counts.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
import pytest

from rag.v1 import common_pb2
from rag.v1 import query_service_pb2 as pb
from rag.v1 import query_service_pb2_grpc as pb_grpc
from rag.v1 import retrieval_service_pb2 as retrieval_pb
from rag.v1 import retrieval_service_pb2_grpc as retrieval_grpc
from rag_cli.launcher import LocalCluster
from rag_common.identity import Identity
from tests.support.fake_llm import FakeLLMServer
from tests.support.redis_servers import RedisServer

pytestmark = pytest.mark.slow

KEY = "fault-key"
TENANT = "faults"
BUDGET_MS = 3000
MARGIN_S = 0.5
RECOVERY_S = 15.0  # restart (model load for embedding) + reconnect + breaker recovery (5 s)
QUERIES_PER_PHASE = 48
CONCURRENCY = 8
TOPICS = ["vacation", "badges", "parking", "laptops", "expenses", "travel", "payroll", "training"]
QUESTIONS = [f"What is the policy on {topic}?" for topic in TOPICS]
_UNIQUE = itertools.count(64)


@dataclass
class Tally:
    """What one phase of queries got."""

    normal: int = 0
    providers: Counter = field(default_factory=Counter)  # who wrote the normal answers
    degraded: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)
    slowest_s: float = 0.0


@dataclass(frozen=True)
class Fault:
    """How to break something and how to mend it, and what answers to accept meanwhile."""

    name: str
    inject: Callable[[], None]
    remove: Callable[[], None]
    allowed_degraded: frozenset[str] = frozenset()
    allowed_failed: frozenset[str] = frozenset()


async def run_phase(stub, count: int) -> Tally:
    tally = Tally()
    pending = iter(range(count))

    async def worker() -> None:
        for i in pending:
            # A max_tokens never used before: the answer cache (keyed by it) never hits, so
            # every query exercises the pipeline, while the retrieval fallback (not keyed by
            # it) can still stand in.
            request = pb.QueryRequest(
                question=QUESTIONS[i % len(QUESTIONS)],
                options=pb.QueryOptions(budget_ms=BUDGET_MS, max_tokens=next(_UNIQUE)),
            )
            started = time.monotonic()
            try:
                reply = await stub.Query(
                    request, metadata=[("authorization", f"Bearer {KEY}")], timeout=30
                )
            except grpc.aio.AioRpcError as exc:
                tally.failed[exc.code().name] += 1
            else:
                if reply.degraded:
                    tally.degraded[",".join(reply.degraded)] += 1
                else:
                    tally.normal += 1
                    tally.providers[reply.provider] += 1
            tally.slowest_s = max(tally.slowest_s, time.monotonic() - started)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return tally


async def recovered_within(stub, seconds: float) -> float:
    """Seconds until a query is answered normally again, by the primary LLM provider."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        tally = await run_phase(stub, 1)
        if tally.providers["primary"]:
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    raise AssertionError(f"no normal answer within {seconds}s")


async def test_fault_suite(tmp_path, capsys):
    llm = FakeLLMServer().start()
    llm.hang_s = 3.0
    primary = {
        "name": "primary",
        "kind": "openai",
        "model": "primary",
        "base_url": f"{llm.url}/v1",
        "timeout_s": 1.0,
        "first_token_timeout_s": 1.0,
    }
    redis = RedisServer(tmp_path)  # not started: Redis is down when the services start
    cluster = LocalCluster.on_free_ports(tmp_path)
    replica = cluster.add_replica("retrieval")
    cluster.env.update(
        {
            "RAG_QUERY_API_KEYS": json.dumps({KEY: {"tenant": TENANT, "roles": ["writer"]}}),
            "RAG_QUERY_RETRIEVAL_TARGET": ",".join(
                cluster.address(r) for r in ("retrieval", replica)
            ),
            "RAG_GENERATION_PROVIDERS": json.dumps([primary, "extractive"]),
            "RAG_GENERATION_BREAKER_RECOVERY_S": "5",
            "RAG_EMBEDDING_REDIS_URL": redis.url,
            "RAG_QUERY_REDIS_URL": redis.url,
        }
    )
    cluster.start(("embedding", "retrieval", replica, "generation", "query"))
    rows: list[tuple[str, Tally, Tally | None, float]] = []
    try:
        await cluster.wait_serving(within_s=240)
        await ingest_into_every_replica(cluster, ("retrieval", replica))
        async with grpc.aio.insecure_channel(cluster.address("query")) as channel:
            stub = pb_grpc.QueryServiceStub(channel)
            baseline = await run_phase(stub, QUERIES_PER_PHASE)  # also fills fallback caches
            assert baseline.providers["primary"] == QUERIES_PER_PHASE, baseline
            rows.append(("Redis down at start (baseline)", baseline, None, 0.0))
            redis.start()

            def model_mode(mode: str) -> Callable[[], None]:
                return lambda: llm.model_modes.__setitem__("primary", mode)

            def restart(name: str) -> Callable[[], None]:
                return lambda: cluster.start((name,))

            faults = [
                Fault("Redis down mid-run", redis.stop, redis.start),
                Fault(
                    "embedding killed",
                    lambda: cluster.stop(("embedding",)),
                    restart("embedding"),
                    frozenset({"retrieval_cached"}),
                ),
                Fault(
                    "retrieval killed (both replicas)",
                    lambda: cluster.stop(("retrieval", replica)),
                    lambda: cluster.start(("retrieval", replica)),
                    frozenset({"retrieval_cached"}),
                ),
                Fault(
                    "one of two retrieval replicas killed",
                    lambda: cluster.stop((replica,)),
                    restart(replica),
                ),
                Fault(
                    "generation killed",
                    lambda: cluster.stop(("generation",)),
                    restart("generation"),
                    frozenset({"llm_unavailable"}),
                ),
                Fault("LLM provider errors (500)", model_mode("error500"), llm.model_modes.clear),
                Fault(
                    "LLM provider rate-limits (429)", model_mode("ratelimit"), llm.model_modes.clear
                ),
                Fault("LLM provider hangs", model_mode("hang"), llm.model_modes.clear),
            ]
            for fault in faults:
                fault.inject()
                during = await run_phase(stub, QUERIES_PER_PHASE)
                fault.remove()
                await cluster.wait_serving(within_s=240)
                took = await recovered_within(stub, RECOVERY_S)
                after = await run_phase(stub, QUERIES_PER_PHASE)
                rows.append((fault.name, during, after, took))
                assert set(during.degraded) <= fault.allowed_degraded, (fault.name, during)
                assert set(during.failed) <= fault.allowed_failed, (fault.name, during)
                assert during.slowest_s <= BUDGET_MS / 1000 + MARGIN_S, (fault.name, during)
                assert after.providers["primary"] == QUERIES_PER_PHASE, (fault.name, after)
                crashed = [n for n, p in cluster.processes.items() if p.poll() is not None]
                assert not crashed, (fault.name, crashed)
    finally:
        cluster.stop()
        llm.stop()
        redis.stop()
        with capsys.disabled():
            print_table(rows)


async def ingest_into_every_replica(cluster: LocalCluster, replicas: tuple[str, ...]) -> None:
    """Each embedded replica has its own store, so each gets the documents."""
    documents = [
        common_pb2.Document(
            id=topic,
            title=topic.title(),
            text=f"The policy on {topic}: ask your manager about {topic} first.",
        )
        for topic in TOPICS
    ]
    metadata = Identity("tests", TENANT, frozenset({"writer"})).to_metadata()
    for name in replicas:
        async with grpc.aio.insecure_channel(cluster.address(name)) as channel:
            await retrieval_grpc.RetrievalServiceStub(channel).UpsertDocuments(
                retrieval_pb.UpsertDocumentsRequest(documents=documents),
                metadata=metadata,
                timeout=60,
            )


def print_table(rows) -> None:
    """One line per fault: answers while it lasted, then recovery after it was removed."""
    print(
        f"\n{'fault':<38}{'normal':>7}  {'degraded (reason)':<26}{'failed':<16}"
        f"{'slowest':>8}{'recovered':>10}{'after':>7}"
    )
    for name, during, after, took in rows:
        degraded = ", ".join(f"{n} {r}" for r, n in during.degraded.items()) or "0"
        failed = ", ".join(f"{n} {c}" for c, n in during.failed.items()) or "0"
        recovery = f"{took:>9.1f}s{after.normal:>7}" if after else f"{'-':>10}{'-':>7}"
        print(
            f"{name:<38}{during.normal:>7}  {degraded:<26}{failed:<16}"
            f"{during.slowest_s:>7.2f}s{recovery}"
        )
