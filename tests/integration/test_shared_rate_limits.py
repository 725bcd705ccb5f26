"""Rate limits shared through the real Redis (and Redis Cluster) by every replica."""

from __future__ import annotations

import pytest

from rag_common.server.fair_use import LocalBuckets, SharedBuckets
from rag_common.shared_redis import redis_client
from tests.support.redis_servers import RedisServer, start_cluster

pytestmark = pytest.mark.slow


def buckets(tenant: str, rate: float = 1.0, burst: int = 3) -> list[tuple[str, float, int]]:
    prefix = f"rag:rate:{{{tenant}}}"
    return [(f"{prefix}:tenant", rate, burst), (f"{prefix}:principal:k", 100.0, 100)]


async def test_two_replicas_draw_from_one_bucket(tmp_path):
    server = RedisServer(tmp_path).start()
    replicas = [SharedBuckets(redis_client(server.url)) for _ in range(2)]
    try:
        waits = [await replicas[n % 2].take(buckets("acme")) for n in range(4)]
        assert waits[:3] == [0.0, 0.0, 0.0]  # the burst, taken through both replicas
        assert 0 < waits[3] <= 1.0  # the fourth waits for the next token, on either
        assert await replicas[0].take(buckets("globex")) == 0.0
    finally:
        server.stop()


async def test_a_refused_call_takes_no_token_from_the_other_bucket(tmp_path):
    server = RedisServer(tmp_path).start()
    shared = SharedBuckets(redis_client(server.url))
    try:
        key = ("rag:rate:{a}:principal:k", 0.01, 2)  # two tokens, none back for minutes
        assert await shared.take([("rag:rate:{a}:tenant", 0.01, 1), key]) == 0.0
        assert await shared.take([("rag:rate:{a}:tenant", 0.01, 1), key]) > 0  # tenant empty
        # The refusal took nothing from the key: its second token is still there, once.
        assert await shared.take([("rag:rate:{a}:other", 0.01, 1), key]) == 0.0
        assert await shared.take([("rag:rate:{a}:third", 0.01, 1), key]) > 0
    finally:
        server.stop()


async def test_redis_down_means_limits_per_replica_not_errors(tmp_path):
    server = RedisServer(tmp_path).start()
    shared = SharedBuckets(redis_client(server.url), LocalBuckets())
    try:
        assert await shared.take(buckets("acme", burst=2)) == 0.0
        server.stop()
        # Redis's count is gone with it: this replica starts its own, and still limits.
        assert await shared.take(buckets("acme", burst=2)) == 0.0
        assert await shared.take(buckets("acme", burst=2)) == 0.0
        assert await shared.take(buckets("acme", burst=2)) > 0
    finally:
        server.stop()


async def test_a_tenants_keys_share_one_cluster_slot(tmp_path):
    nodes = start_cluster(tmp_path)
    shared = SharedBuckets(redis_client(nodes[0].url, cluster=True))
    try:
        for tenant in ("acme", "globex", "initech"):
            assert await shared.take(buckets(tenant, burst=1)) == 0.0
            assert await shared.take(buckets(tenant, burst=1)) > 0
    finally:
        for node in nodes:
            node.stop()
