"""The local-over-Redis cache against real Redis: a server, one that dies, and a cluster."""

from __future__ import annotations

import asyncio
import uuid

import numpy as np
import pytest

from rag_common.breaker import BreakerPolicy, CircuitBreaker
from rag_common.cache.local import LocalTTLCache
from rag_common.cache.tiered import RedisLayer, TieredCache
from rag_common.shared_redis import redis_client
from tests.support.redis_servers import RedisServer, start_cluster


def layer(url: str, *, cluster: bool = False, recovery_s: float = 5.0) -> RedisLayer:
    breaker = CircuitBreaker("redis", BreakerPolicy(consecutive_failures=2, recovery_s=recovery_s))
    return RedisLayer(
        redis_client(url, cluster=cluster),
        f"test-{uuid.uuid4().hex[:8]}",
        ttl_s=60,
        breaker=breaker,
    )


@pytest.fixture
async def redis_server(tmp_path):
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


async def test_a_redis_hit_fills_the_local_layer_and_binary_values_survive(redis_server):
    remote = layer(redis_server.url)
    vector = np.arange(384, dtype=np.float32)
    writer = TieredCache(LocalTTLCache(10, 60), remote)
    await writer.set_many({"a": vector.tobytes(), "b": b"\x00\xff"})
    # Another replica: empty local layer, same Redis.
    reader = TieredCache(LocalTTLCache(10, 60), remote)
    values = await reader.get_many(["a", "b", "missing"])
    assert np.array_equal(np.frombuffer(values[0], dtype=np.float32), vector)
    assert values[1:] == [b"\x00\xff", None]
    assert (reader.counts["remote_hit"], reader.counts["miss"]) == (2, 1)
    await reader.get_many(["a"])
    assert reader.counts["local_hit"] == 1  # served locally now
    await remote.close()


async def test_local_entries_expire_on_their_own_ttl(redis_server):
    clock = [0.0]
    local = LocalTTLCache(10, ttl_s=1.0, clock=lambda: clock[0])
    cache = TieredCache(local, layer(redis_server.url))
    await cache.set_many({"k": b"v"})
    clock[0] = 2.0
    assert await cache.get_many(["k"]) == [b"v"]  # gone locally, still in Redis
    assert cache.counts["remote_hit"] == 1


async def test_redis_down_never_fails_a_call_and_is_used_again_when_back(tmp_path):
    server = RedisServer(tmp_path).start()
    remote = layer(server.url, recovery_s=0.5)
    cache = TieredCache(LocalTTLCache(10, 60), remote)
    await cache.set_many({"before": b"1"})
    server.stop()
    await cache.set_many({"during": b"2"})  # no error
    assert await cache.get_many(["during", "before"]) == [b"2", b"1"]  # local layer carries on
    assert await cache.get_many(["nowhere"]) == [None]
    assert remote.breaker.state.value == "open"
    server.start()  # back, at the same address
    try:
        await asyncio.sleep(0.6)  # the breaker's recovery time
        await cache.set_many({"after": b"3"})
        fresh = TieredCache(LocalTTLCache(10, 60), remote)
        assert await fresh.get_many(["after"]) == [b"3"]
        assert remote.breaker.state.value == "closed"
    finally:
        server.stop()
        await remote.close()


async def test_a_three_master_redis_cluster(tmp_path):
    nodes = start_cluster(tmp_path)
    try:
        remote = layer(nodes[0].url.removesuffix("/0"), cluster=True)
        cache = TieredCache(LocalTTLCache(1000, 60), remote)
        items = {f"key-{i}": f"value-{i}".encode() for i in range(200)}  # spread over slots
        await cache.set_many(items)
        reader = TieredCache(LocalTTLCache(1000, 60), remote)
        assert await reader.get_many(list(items)) == list(items.values())
        assert reader.counts["remote_hit"] == 200
        await remote.close()
    finally:
        for node in nodes:
            node.stop()
