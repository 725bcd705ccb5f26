"""A rolling upgrade as containers under load: two replicas each of query, generation and
embedding (one retrieval with its embedded store, and Redis), every replica replaced one at a
time by the same code under another tag and version label. Embedding and generation go as a
Deployment with maxSurge 1 and maxUnavailable 0 does it: the new container serves under the
same name first, then the old one gets SIGTERM. The clients here reach query on two fixed
host ports, so each query replica is stopped first and its successor takes the port (as
maxUnavailable 1): the clients' round-robin sends to the other meanwhile. No call may fail.
The p95 of each five-second window is printed (`pytest -s`), and the steady state's."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

import grpc
import pytest

from rag.v1 import document_service_pb2, document_service_pb2_grpc
from rag.v1 import query_service_pb2_grpc as pb_grpc
from rag_cli.launcher import free_port
from rag_common.client.channel import channel_target
from tests.deploy.containers import IDENTITY_KEY, build, podman, require_podman, wait_serving
from tests.support.question_load import Call, QuestionLoad, topic_documents

pytestmark = pytest.mark.slow
KEY = "rollout-key"
AUTH = [("authorization", f"Bearer {KEY}")]
PORTS = {"query": 50051, "retrieval": 50052, "generation": 50053, "embedding": 50054}
WINDOW_S = 5.0


@dataclass
class Fleet:
    """Containers on one podman network; replicas of a service share its name in DNS."""

    network: str
    images: dict[str, str]
    running: list[str] = field(default_factory=list)

    def start(self, service: str, name: str, image: str, port: int = 0, **env: str) -> str:
        """Start a replica and wait until it serves; `port`: publish query's port there."""
        options = ["--env", f"RAG_IDENTITY_KEY={IDENTITY_KEY}"]
        for key, value in env.items():
            options += ["--env", f"{key}={value}"]
        if port:
            options += ["--publish", f"127.0.0.1:{port}:50051"]
        podman(
            "run", "--detach", "--name", name, "--network", self.network,
            "--network-alias", service, "--read-only", "--tmpfs", "/tmp", *options,
            image, service,
        )  # fmt: skip
        self.running.append(name)
        wait_serving(name, PORTS[service])
        return name

    def running_of(self, service: str) -> list[str]:
        """The running replicas of `service`."""
        return [name for name in self.running if name.split("-")[1] == service]

    def stop(self, name: str) -> None:
        """SIGTERM, then the grace the service drains in (as a pod's termination does)."""
        podman("stop", "--time", "20", name)
        podman("rm", "-v", name)
        self.running.remove(name)


QUERY_ENV = {
    "RAG_QUERY_EMBEDDING_TARGET": "embedding:50054",
    "RAG_QUERY_RETRIEVAL_TARGET": "retrieval:50052",
    "RAG_QUERY_GENERATION_TARGET": "generation:50053",
    "RAG_QUERY_REDIS_URL": "redis://redis:6379/0",
    "RAG_QUERY_API_KEYS": json.dumps({KEY: {"tenant": "rollout", "roles": ["writer"]}}),
}


@pytest.fixture(scope="module")
def fleet():
    require_podman()
    images = {target: build(target).name for target in ("light", "models", "redis")}
    images |= {
        f"{target}-next": build(target, RAG_IMAGE_TAG="next", RAG_IMAGE_VERSION="next").name
        for target in ("light", "models")
    }
    network = f"ragroll{free_port()}"
    podman("network", "create", network)
    fleet = Fleet(network, images)
    try:
        podman(
            "run", "--detach", "--name", "roll-redis", "--network", network,
            "--network-alias", "redis", images["redis"],
            "redis-server", "--protected-mode", "no", "--save", "",
        )  # fmt: skip
        fleet.running.append("roll-redis")
        for replica in ("a", "b"):
            fleet.start("embedding", f"roll-embedding-{replica}", images["models"])
            fleet.start("generation", f"roll-generation-{replica}", images["models"])
        fleet.start(
            "retrieval",
            "roll-retrieval-a",
            images["light"],
            RAG_RETRIEVAL_EMBEDDING_TARGET="embedding:50054",
        )
        for replica in ("a", "b"):
            port = free_port()
            fleet.start("query", f"roll-query-{replica}", images["light"], port, **QUERY_ENV)
        yield fleet
    finally:
        for name in fleet.running:
            podman("rm", "--force", "-v", "--time", "2", name, check=False)
        podman("network", "rm", network, check=False)


# Callers round-robin over both query replicas and retry a refused call, as a balancer
# does. Query is a read, so they retry CANCELLED too: gRPC cancels a call that reaches a
# replica in the instant its server stops (1 of 11,802 calls, in one of three runs).
_CALLER_CONFIG = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [{"service": "rag.v1.QueryService"}, {"service": "rag.v1.DocumentService"}],
                "retryPolicy": {
                    "maxAttempts": 3,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "0.5s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE", "CANCELLED"],
                },
            }
        ],
    }
)


def caller_channel(targets: str) -> grpc.aio.Channel:
    """A public caller's channel to both query replicas."""
    options = [
        ("grpc.service_config", _CALLER_CONFIG),
        ("grpc.enable_retries", 1),
        ("grpc.min_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 1000),
    ]
    return grpc.aio.insecure_channel(channel_target(targets), options=options)


async def ingest(stub: document_service_pb2_grpc.DocumentServiceStub) -> None:
    request = document_service_pb2.IngestDocumentsRequest(documents=topic_documents())
    await stub.IngestDocuments(request, metadata=AUTH, timeout=60)


def windows(calls: list[Call]) -> list[tuple[float, int, float, int]]:
    """(window start, calls, p95 ms, failed) per WINDOW_S of the run."""
    rows = []
    for start in range(0, int(max(c.at_s for c in calls) // WINDOW_S) + 1):
        inside = [c for c in calls if start * WINDOW_S <= c.at_s < (start + 1) * WINDOW_S]
        if inside:
            latencies = sorted(c.ms for c in inside)
            p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
            rows.append((start * WINDOW_S, len(inside), p95, sum(c.failed for c in inside)))
    return rows


def published_port(container: str) -> int:
    return int(podman("port", container).rsplit(":", 1)[1])


async def replace(fleet: Fleet, service: str, old: str, mark) -> None:
    """Replace one replica by one of the next version, marking each step."""
    new = old.replace(service, f"{service}-next")
    image = fleet.images["light-next" if service == "query" else "models-next"]
    if service != "query":
        await asyncio.to_thread(fleet.start, service, new, image)
        mark(f"{new} serving")
        await asyncio.to_thread(fleet.stop, old)
        mark(f"{old} stopped")
        return
    port = published_port(old)
    await asyncio.to_thread(fleet.stop, old)
    mark(f"{old} stopped")
    await asyncio.to_thread(fleet.start, service, new, image, port, **QUERY_ENV)
    mark(f"{new} serving")


async def test_replacing_every_replica_with_a_new_version_under_load_fails_no_call(fleet):
    ports = [published_port(name) for name in fleet.running_of("query")]
    targets = ",".join(f"127.0.0.1:{port}" for port in ports)
    events: list[tuple[float, str]] = []
    async with caller_channel(targets) as channel:
        await ingest(document_service_pb2_grpc.DocumentServiceStub(channel))
        async with QuestionLoad(pb_grpc.QueryServiceStub(channel), AUTH, callers=4) as load:
            await asyncio.sleep(15)  # the steady state
            for service in ("embedding", "generation", "query"):
                for old in fleet.running_of(service):
                    await replace(fleet, service, old, lambda e: events.append((load.now(), e)))
            await asyncio.sleep(10)  # after the rollout

    calls = load.calls
    rollout_start, rollout_end = events[0][0], events[-1][0]
    steady = [c.ms for c in calls if c.at_s < 15]
    during = [c.ms for c in calls if rollout_start - 5 <= c.at_s <= rollout_end]
    p95 = lambda values: sorted(values)[int(0.95 * len(values))]  # noqa: E731
    print(f"\n{len(calls)} calls: {dict(load.outcomes)}")
    print(f"p95 steady {p95(steady):.0f} ms, during the rollout {p95(during):.0f} ms")
    for start, count, window_p95, failed in windows(calls):
        marks = "; ".join(e for t, e in events if start <= t < start + WINDOW_S)
        print(f"  {start:5.0f}s {count:4d} calls p95 {window_p95:6.0f} ms failed {failed} {marks}")
    for name in fleet.running_of("query") + fleet.running_of("embedding"):
        label = podman(
            "inspect",
            "--format",
            '{{index .Config.Labels "org.opencontainers.image.version"}}',
            name,
        )
        assert label == "next", name
    assert load.failed == {} and load.outcomes["normal"] > 0
