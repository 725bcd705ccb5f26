"""Faults as production has them, injected into running processes while queries are in flight.

Each service and Redis is crashed (SIGKILL) and hung (SIGSTOP) in turn, and the LLM provider
fails, rate-limits and hangs, each under continuous load from 8 clients. For every phase:
the answers get exactly the degradation that fault calls for (and some do, so a fault that
changes nothing fails the test), none fails where a fallback exists, every answer comes
within its budget plus a margin, a hang is detected by the breaker that guards it so later
requests degrade at once, no process crashes, and normal answers return within the breaker
recovery time plus a second once the fault ends. Prints one table of the counts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
import pytest

from rag.v1 import common_pb2, health_details_service_pb2, health_details_service_pb2_grpc
from rag.v1 import document_service_pb2 as doc_pb
from rag.v1 import document_service_pb2_grpc as doc_grpc
from rag.v1 import query_service_pb2 as pb
from rag.v1 import query_service_pb2_grpc as pb_grpc
from rag_cli.launcher import LocalCluster
from rag_common.security.identity import Identity
from rag_common.settings import ServiceSettings
from tests.support.fake_llm import FakeLLMServer
from tests.support.redis_servers import RedisServer
from tests.support.suite import upsert_directly

pytestmark = pytest.mark.slow

KEY = "fault-key"
OPERATOR_KEY = "fault-operator-key"
TENANT = "faults"
BUDGET_MS = 3000
MARGIN_S = 0.5
BREAKER_RECOVERY_S = 5.0  # query's breakers on its dependencies, generation's on providers
PHASE_S = 4.0  # load per phase; the fault starts INJECT_AT_S into it, calls in flight
INJECT_AT_S = 0.5
FAST_S = 0.3  # once a hang is detected, the median answer is at least this fast
CONCURRENCY = 8
GRACE_S = 2.0  # query's grace period on SIGTERM
# Before it, the port keeps taking calls for this long (calls already sent arrive).
SHUTDOWN_DELAY_S = ServiceSettings.model_fields["shutdown_delay_s"].default
TOPICS = ["vacation", "badges", "parking", "laptops", "expenses", "travel", "payroll", "training"]
QUESTIONS = [f"What is the policy on {topic}?" for topic in TOPICS]
# Each query names a max_tokens (part of the answer cache key, not of the retrieval
# fallback's) not used since the corpus version last moved, so the answer cache never hits
# and every query exercises the pipeline, while the fallback can still stand in. The
# version moves between phases (`new_corpus_version`), so values can be used again.
_UNIQUE = itertools.cycle(range(64, 4096))
# A restarted client-side channel should find the server again within a second.
_CHANNEL_OPTIONS = [
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.initial_reconnect_backoff_ms", 200),
]


@dataclass
class Tally:
    """What one phase of queries got."""

    normal: int = 0
    providers: Counter = field(default_factory=Counter)  # who wrote the normal answers
    passed_over: Counter = field(default_factory=Counter)  # who failed before the writer
    degraded: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.normal + sum(self.degraded.values()) + sum(self.failed.values())

    @property
    def slowest_s(self) -> float:
        return max(self.latencies, default=0.0)

    @property
    def median_s(self) -> float:
        return statistics.median(self.latencies) if self.latencies else 0.0


@dataclass(frozen=True)
class Fault:
    """How to break something and mend it, and what the answers must show meanwhile."""

    name: str
    inject: Callable[[], None]
    remove: Callable[[], None]
    degraded: frozenset[str] = frozenset()  # the reasons allowed, at least one required
    failed: frozenset[str] = frozenset()  # status codes allowed (only where no fallback exists)
    breaker: str = ""  # query's breaker that must have opened (a hang detected)
    felt: Callable[[Tally], bool] = lambda tally: True  # proof that the fault bit
    bounded: bool = True  # every answer within budget + margin (not when query itself hangs)
    # Share of answers that must be normal; above 0, `degraded` lists what the rest may be
    # and none is required (a replica of two hung: the other answers in its place).
    min_normal: float = 0.0


async def ask(stub, question: str, tally: Tally) -> None:
    request = pb.QueryRequest(
        question=question, options=pb.QueryOptions(budget_ms=BUDGET_MS, max_tokens=next(_UNIQUE))
    )
    started = time.monotonic()
    try:
        reply = await stub.Query(
            request,
            metadata=[("authorization", f"Bearer {KEY}")],
            timeout=BUDGET_MS / 1000 + 1.5,
        )
    except grpc.aio.AioRpcError as exc:
        tally.failed[exc.code().name] += 1
        await asyncio.sleep(0.05)  # a refused connection fails at once: do not spin
    else:
        if reply.degraded:
            tally.degraded[",".join(reply.degraded)] += 1
        else:
            tally.normal += 1
            tally.providers[reply.provider] += 1
            tally.passed_over.update(reply.failed_providers)
    finally:
        tally.latencies.append(time.monotonic() - started)


async def load(stub, seconds: float, inject: Callable[[], None] | None = None) -> Tally:
    """CONCURRENCY clients asking for `seconds`; `inject` runs INJECT_AT_S in, calls in flight."""
    tally = Tally()
    questions = itertools.cycle(QUESTIONS)
    end = time.monotonic() + seconds

    async def client() -> None:
        while time.monotonic() < end:
            await ask(stub, next(questions), tally)

    async def injector() -> None:
        await asyncio.sleep(INJECT_AT_S)
        inject()

    await asyncio.gather(*(client() for _ in range(CONCURRENCY)), *([injector()] if inject else []))
    return tally


async def recovered_within(stub, seconds: float) -> float:
    """Seconds until a query is answered normally again, by the primary LLM provider."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        tally = Tally()
        await ask(stub, QUESTIONS[0], tally)
        if tally.providers["primary"]:
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    raise AssertionError(f"no normal answer within {seconds}s: {tally}")


async def new_corpus_version(channel: grpc.aio.Channel) -> None:
    """Move the tenant's corpus version (a delete of nothing): no earlier answer hits."""
    request = doc_pb.DeleteDocumentsRequest(document_ids=["nothing"])
    stub = doc_grpc.DocumentServiceStub(channel)
    await stub.DeleteDocuments(request, metadata=[("authorization", f"Bearer {KEY}")], timeout=10)


async def breaker_state(cluster: LocalCluster, dependency: str) -> str:
    """Query's breaker on `dependency`, as its health details report it."""
    async with grpc.aio.insecure_channel(cluster.address("query")) as channel:
        stub = health_details_service_pb2_grpc.HealthDetailsServiceStub(channel)
        report = await stub.GetHealthDetails(
            health_details_service_pb2.GetHealthDetailsRequest(),
            metadata=[("authorization", f"Bearer {OPERATOR_KEY}")],
            timeout=5,
        )
    return next(d.breaker for d in report.dependencies if d.name == dependency)


@pytest.fixture(scope="module")
async def suite(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faults")
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
    redis = RedisServer(folder).start()
    cluster = LocalCluster.on_free_ports(folder)
    replica = cluster.add_replica("retrieval")
    cluster.env.update(
        {
            "RAG_QUERY_API_KEYS": json.dumps(
                {
                    KEY: {"tenant": TENANT, "roles": ["writer"]},
                    OPERATOR_KEY: {"tenant": TENANT, "roles": ["operator"]},
                }
            ),
            "RAG_QUERY_RETRIEVAL_TARGET": ",".join(
                cluster.address(r) for r in ("retrieval", replica)
            ),
            "RAG_QUERY_BREAKER_RECOVERY_S": str(BREAKER_RECOVERY_S),
            "RAG_QUERY_GRACE_PERIOD_S": str(GRACE_S),
            "RAG_GENERATION_PROVIDERS": json.dumps([primary, "extractive"]),
            "RAG_GENERATION_BREAKER_RECOVERY_S": str(BREAKER_RECOVERY_S),
            "RAG_EMBEDDING_REDIS_URL": redis.url,
            "RAG_QUERY_REDIS_URL": redis.url,
        }
    )
    cluster.start(("embedding", "retrieval", replica, "generation", "query"))
    try:
        await cluster.wait_serving(within_s=240)
        await ingest_into_every_replica(cluster, ("retrieval", replica))
        yield cluster, replica, llm, redis
    finally:
        cluster.resume(tuple(cluster.processes))
        cluster.stop()
        llm.stop()
        redis.stop()


def faults(cluster: LocalCluster, replica: str, llm: FakeLLMServer, redis: RedisServer):
    """Every fault of the suite, in the order they are injected."""
    both = ("retrieval", replica)

    def crash(*names: str) -> Fault:
        def restart() -> None:
            cluster.start(names)

        return Fault(f"{' + '.join(names)} SIGKILL", lambda: cluster.kill(names), restart)

    def hang(*names: str) -> Fault:
        return Fault(
            f"{' + '.join(names)} SIGSTOP",
            lambda: cluster.pause(names),
            lambda: cluster.resume(names),
            breaker=names[0].split("#")[0],
        )

    def model_mode(mode: str) -> Callable[[], None]:
        return lambda: llm.model_modes.__setitem__("primary", mode)

    def by_fallback(tally: Tally) -> bool:
        # Answers say which provider failed first (until its breaker opens and it is
        # skipped without a call).
        return tally.providers["extractive"] > 0 and tally.passed_over["primary"] > 0

    def cached(fault: Fault, reason: str) -> Fault:
        return dataclasses.replace(fault, degraded=frozenset({reason}))

    return [
        cached(crash("embedding"), "retrieval_cached"),
        cached(hang("embedding"), "retrieval_cached"),
        cached(crash(*both), "retrieval_cached"),
        cached(hang(*both), "retrieval_cached"),
        Fault(
            f"{replica} SIGKILL (one of two)",
            lambda: cluster.kill((replica,)),
            lambda: cluster.start((replica,)),
        ),
        # Hung, it still accepts connections: hedged searches and outlier ejection keep
        # the answers normal, as if it were down.
        Fault(
            f"{replica} SIGSTOP (one of two)",
            lambda: cluster.pause((replica,)),
            lambda: cluster.resume((replica,)),
            degraded=frozenset({"retrieval_cached", "no_context"}),
            min_normal=0.95,
        ),
        cached(crash("generation"), "llm_unavailable"),
        cached(hang("generation"), "llm_unavailable"),
        Fault(
            "query SIGKILL",
            lambda: cluster.kill(("query",)),
            lambda: cluster.start(("query",)),
            failed=frozenset({"UNAVAILABLE"}),
            felt=lambda tally: tally.failed["UNAVAILABLE"] > 0,
        ),
        Fault(
            "query SIGSTOP",
            lambda: cluster.pause(("query",)),
            lambda: cluster.resume(("query",)),
            failed=frozenset({"DEADLINE_EXCEEDED"}),
            felt=lambda tally: tally.failed["DEADLINE_EXCEEDED"] > 0,
            bounded=False,
        ),
        Fault("LLM errors (500)", model_mode("error500"), llm.model_modes.clear, felt=by_fallback),
        Fault(
            "LLM rate-limits (429)",
            model_mode("ratelimit"),
            llm.model_modes.clear,
            felt=by_fallback,
        ),
        Fault("LLM hangs", model_mode("hang"), llm.model_modes.clear, felt=by_fallback),
        # Last: a Redis that lost its data gives every tenant a new corpus version, so the
        # retrieval fallback filled by the baseline serves nothing until traffic refills
        # it, and the faults above that rely on it would find it empty.
        Fault("Redis SIGKILL", redis.stop, redis.start, breaker="redis"),
        Fault("Redis SIGSTOP", redis.pause, redis.resume, breaker="redis"),
    ]


async def test_faults_under_load(suite, capsys):
    cluster, replica, llm, redis = suite
    rows: list[tuple[str, Tally, float | None, float | None]] = []
    try:
        async with grpc.aio.insecure_channel(
            cluster.address("query"), options=_CHANNEL_OPTIONS
        ) as channel:
            stub = pb_grpc.QueryServiceStub(channel)
            baseline = await load(stub, PHASE_S)  # also fills the retrieval fallback
            rows.append(("none (baseline)", baseline, None, None))
            assert baseline.providers["primary"] == baseline.total > 0, baseline
            for fault in faults(cluster, replica, llm, redis):
                during = await load(stub, PHASE_S, fault.inject)
                # Read before the fault ends: the hang must have been detected by now.
                breaker = await breaker_state(cluster, fault.breaker) if fault.breaker else ""
                fault.remove()
                ready = await cluster.wait_serving(within_s=240)  # restarted processes are up
                restart_s = max(ready.values())
                rows.append((fault.name, during, restart_s, None))
                took = await recovered_within(stub, BREAKER_RECOVERY_S + 1 + 5)
                rows[-1] = (fault.name, during, restart_s, took)
                await new_corpus_version(channel)
                after = await load(stub, 1.0)  # also fills the fallback for the next fault
                where = (fault.name, during)
                assert during.degraded.keys() <= fault.degraded, where
                if fault.min_normal:
                    assert during.normal >= fault.min_normal * during.total, where
                else:
                    assert not fault.degraded or sum(during.degraded.values()) > 0, where
                assert during.failed.keys() <= fault.failed, where
                assert fault.felt(during), where
                if fault.bounded:
                    assert during.slowest_s <= BUDGET_MS / 1000 + MARGIN_S, where
                if fault.breaker:
                    assert breaker in ("open", "half_open"), (fault.name, breaker)
                    assert during.median_s <= FAST_S, where  # hangs fail fast once detected
                assert took <= BREAKER_RECOVERY_S + 1, (fault.name, took)
                assert after.providers["primary"] == after.total > 0, (fault.name, after)
                crashed = [n for n, p in cluster.processes.items() if p.poll() is not None]
                assert not crashed, (fault.name, crashed)
    finally:
        with capsys.disabled():
            print_table(rows)


async def test_a_stopping_query_service_answers_its_calls_in_flight(suite):
    cluster, _replica, _llm, _redis = suite
    async with grpc.aio.insecure_channel(
        cluster.address("query"), options=_CHANNEL_OPTIONS
    ) as channel:
        stub = pb_grpc.QueryServiceStub(channel)
        await recovered_within(stub, BREAKER_RECOVERY_S + 1)
        cluster.pause(("generation",))  # every answer now waits on generation
        try:
            request = pb.QueryRequest(
                question=QUESTIONS[0], options=pb.QueryOptions(budget_ms=20_000, max_tokens=7)
            )
            metadata = [("authorization", f"Bearer {KEY}")]
            calls = [stub.Query(request, metadata=metadata, timeout=30) for _ in range(4)]
            await asyncio.sleep(0.5)
            stopping = time.monotonic()
            cluster.processes["query"].terminate()  # SIGTERM, as a rollout sends
            replies = await asyncio.gather(*calls)
            took = time.monotonic() - stopping
        finally:
            cluster.resume(("generation",))
        # Before the grace period ended, each call got the answer it could give by then.
        assert took <= SHUTDOWN_DELAY_S + GRACE_S, took
        for reply in replies:
            assert list(reply.degraded) == ["llm_unavailable"] and reply.sources
        assert cluster.processes.pop("query").wait(timeout=SHUTDOWN_DELAY_S + GRACE_S + 5) == 0
    cluster.start(("query",))
    await cluster.wait_serving(within_s=60)


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
    identity = Identity("tests", TENANT, frozenset({"writer"}))
    for name in replicas:
        await upsert_directly(cluster.address(name), cluster.credentials(), identity, documents)


def print_table(rows) -> None:
    """One line per fault: answers while it lasted, then how long recovery took once it
    ended (`serving`: until restarted processes were SERVING; `recovered`: from then until
    a normal answer)."""
    print(
        f"\n{'fault (under load, calls in flight)':<36}{'normal':>7}  {'degraded (reason)':<24}"
        f"{'failed':<22}{'p50':>7}{'slowest':>8}{'serving':>9}{'recovered':>10}"
    )

    def seconds(value: float | None, width: int) -> str:
        return f"{value:>{width - 1}.1f}s" if value is not None else f"{'-':>{width}}"

    for name, during, restart_s, took in rows:
        degraded = ", ".join(f"{n} {r}" for r, n in during.degraded.items()) or "0"
        failed = ", ".join(f"{n} {c}" for c, n in during.failed.items()) or "0"
        print(
            f"{name:<36}{during.normal:>7}  {degraded:<24}{failed:<22}"
            f"{during.median_s:>6.2f}s{during.slowest_s:>7.2f}s"
            f"{seconds(restart_s, 9)}{seconds(took, 10)}"
        )
