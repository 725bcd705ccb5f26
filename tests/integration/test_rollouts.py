"""Day-2 operations under load cost no call: two replicas of every service as processes,
8 clients asking, while every process is restarted one at a time, three times over, to
rotate the internal identity key (`old,new`, then `new,old`, then `new`)."""

from __future__ import annotations

import json

import pytest

from rag.v1 import query_service_pb2_grpc as pb_grpc
from rag_cli.launcher import LocalCluster
from rag_common.client.channel import open_channel
from rag_common.security.credentials import Credentials
from rag_common.security.identity import Identity
from tests.support.question_load import QuestionLoad, topic_documents
from tests.support.suite import upsert_directly

KEY = "rollout-key"
AUTH = [("authorization", f"Bearer {KEY}")]
OLD, NEW = "old-identity-key-" + "o" * 32, "new-identity-key-" + "n" * 32
SERVICES = ("embedding", "generation", "retrieval", "query")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory):
    cluster = LocalCluster.on_free_ports(tmp_path_factory.mktemp("rollouts"))
    pairs = {s: (s, cluster.add_replica(s)) for s in SERVICES}
    targets = {s: ",".join(cluster.address(n) for n in pairs[s]) for s in SERVICES}
    cluster.env.update(
        {
            "RAG_IDENTITY_KEY": OLD,
            "RAG_QUERY_API_KEYS": json.dumps({KEY: {"tenant": "rollout", "roles": ["writer"]}}),
            "RAG_QUERY_BUSY_SHED_THRESHOLD": "1",
            "RAG_GENERATION_PROVIDERS": json.dumps(["extractive"]),
            "RAG_QUERY_EMBEDDING_TARGET": targets["embedding"],
            "RAG_RETRIEVAL_EMBEDDING_TARGET": targets["embedding"],
            "RAG_QUERY_RETRIEVAL_TARGET": targets["retrieval"],
            "RAG_QUERY_GENERATION_TARGET": targets["generation"],
        }
    )
    cluster.start(tuple(name for pair in pairs.values() for name in pair))
    try:
        await cluster.wait_serving(within_s=240)
        # Each embedded retrieval replica has its own store: each gets the documents.
        for name in pairs["retrieval"]:
            await ingest(cluster, name)
        yield cluster, pairs, targets["query"]
    finally:
        cluster.stop()


async def ingest(cluster: LocalCluster, replica: str) -> None:
    documents = topic_documents()
    identity = Identity("tests", "rollout", frozenset({"writer"}))
    await upsert_directly(cluster.address(replica), Credentials(OLD, "tests"), identity, documents)


async def restart(cluster: LocalCluster, name: str, key: str) -> None:
    """SIGTERM one process, start it again with `key`, wait until it serves."""
    cluster.stop((name,))
    cluster.process_env[name] = {"RAG_IDENTITY_KEY": key}
    cluster.start((name,))
    await cluster.wait_serving(within_s=120)


async def test_rotating_the_identity_key_replica_by_replica_costs_no_call(cluster):
    cluster_, pairs, query_targets = cluster
    async with open_channel(query_targets) as channel:  # round-robin over both, as callers
        async with QuestionLoad(pb_grpc.QueryServiceStub(channel), AUTH, callers=8) as load:
            for key in (f"{OLD},{NEW}", f"{NEW},{OLD}", NEW):
                for service in SERVICES:  # callees first, then their callers
                    for name in pairs[service]:
                        await restart(cluster_, name, key)
    print(f"\n24 restarts under load, the key rotated in three rollouts: {dict(load.outcomes)}")
    assert load.failed == {} and load.outcomes["normal"] > 0
