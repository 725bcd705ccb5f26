"""Maintenance through one replica is maintenance on all of them, through the real Redis."""

from __future__ import annotations

import asyncio

import pytest

from rag_common.errors import Unavailable
from rag_common.shared_redis import redis_client
from rag_query.maintenance import Maintenance
from tests.support.redis_servers import RedisServer

pytestmark = pytest.mark.slow


async def test_every_replica_follows_the_switch_within_its_poll(tmp_path):
    server = RedisServer(tmp_path).start()
    first, second = (Maintenance(redis_client(server.url), poll_s=0.1) for _ in range(2))
    changes = []

    async def noted(enabled: bool) -> None:
        changes.append(enabled)

    second.on_change = noted
    try:
        async with asyncio.timeout(30):
            for replica in (first, second):
                await replica.start()
            await first.set(True, "upgrading until 14:00")
            await asyncio.sleep(0.3)
            with pytest.raises(Unavailable, match="until 14:00"):
                second.check()
            await first.set(False)
            await asyncio.sleep(0.3)
            second.check()
            assert changes == [True, False]  # health followed both moves
            late = Maintenance(redis_client(server.url))
            await first.set(True, "still upgrading")
            await late.start()  # a replica started now begins in maintenance
            assert late.reason() == "still upgrading"
            await late.close()
    finally:
        for replica in (first, second):
            await asyncio.wait_for(replica.close(), 5)
        server.stop()


async def test_a_switch_that_cannot_be_shared_changes_nothing(tmp_path):
    server = RedisServer(tmp_path).start()
    maintenance = Maintenance(redis_client(server.url), poll_s=0.1)
    await maintenance.start()
    server.stop()
    try:
        with pytest.raises(Unavailable) as refused:
            await maintenance.set(True, "upgrading")
        assert refused.value.reason == "MAINTENANCE_NOT_SHARED"
        await asyncio.sleep(0.3)  # the follower keeps the last state it read
        maintenance.check()
    finally:
        await maintenance.close()
