"""Fair use on the public port: one tenant's flood or stalled streams never starve another."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from rag.v1 import common_pb2
from rag.v1 import document_service_pb2 as doc_pb
from rag.v1 import document_service_pb2_grpc as doc_grpc
from rag.v1 import query_service_pb2 as pb
from rag.v1 import query_service_pb2_grpc as pb_grpc
from rag_common.server import busy_shedding
from rag_common.status import error_info, retry_delay
from rag_query.config import ApiKey, QuerySettings
from tests.support.stalled_client import StalledClient
from tests.support.suite import in_process_suite

KEYS = {
    "acme-1": ApiKey(tenant="acme", roles=["writer"]),
    "acme-2": ApiKey(tenant="acme", roles=["reader"]),
    "globex": ApiKey(tenant="globex", roles=["writer"]),
}
STREAM_QUERY = "/rag.v1.QueryService/StreamQuery"
RESOURCE_EXHAUSTED = 8


def auth(key: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


async def ask(stub, key: str, question: str = "What causes tides?"):
    return await stub.Query(pb.QueryRequest(question=question), metadata=auth(key), timeout=10)


async def refused(stub, key: str) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ask(stub, key)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    return caught.value


def suite(embedder, tmp_path, **limits):
    unlimited = {
        "tenant_rate_limit": 0,
        "principal_rate_limit": 0,
        "tenant_max_concurrent": 0,
        "connection_max_streams": 0,
        "busy_shed_threshold": 1,
    }
    settings = QuerySettings(port=0, api_keys=KEYS, **(unlimited | limits))
    return in_process_suite(embedder, tmp_path, settings)


async def test_a_tenant_over_its_rate_waits_as_told_while_others_are_served(embedder, tmp_path):
    async with suite(embedder, tmp_path, tenant_rate_limit=2, tenant_burst=2) as running:
        stub = pb_grpc.QueryServiceStub(running.channel)
        await ask(stub, "acme-1")
        await ask(stub, "acme-2", "Bees?")  # the tenant's bucket, whichever key
        error = await refused(stub, "acme-1")
        assert error_info(error).reason == "RATE_LIMITED"
        delay = retry_delay(error)
        assert 0 < delay <= 0.5  # one token comes back every 0.5 s
        await ask(stub, "globex")  # another tenant has its own bucket
        await asyncio.sleep(delay)
        await ask(stub, "acme-1")  # after the delay it was told, it is served


async def test_while_busy_a_tenant_over_its_share_is_told_to_wait_and_the_other_is_served(
    embedder, tmp_path, monkeypatch
):
    """How busy the event loop is stands in here for a flood of cached answers, which makes
    it busy for real (`make bench`, the popular-question flood)."""
    busy = {"level": 1.0}
    monkeypatch.setattr(busy_shedding.LoopBusy, "level", lambda self: busy["level"])
    monkeypatch.setattr(busy_shedding, "WINDOW_S", 600.0)  # every call of the test counts
    async with suite(embedder, tmp_path, busy_shed_threshold=0.3) as running:
        stub = pb_grpc.QueryServiceStub(running.channel)
        # Alone, however busy; three at once, as a flood's calls overlap.
        answers = await asyncio.gather(*(ask(stub, "acme-1") for _ in range(3)))
        assert all(a.text for a in answers)
        assert (await ask(stub, "globex")).text
        error = await refused(stub, "acme-2")  # the tenant's share, whichever key
        assert error_info(error).reason == "TENANT_OVER_SHARE"
        assert 0.1 <= retry_delay(error) <= 0.3
        assert "Traceback" not in error.details()
        assert (await ask(stub, "globex")).text
        busy["level"] = 0.2  # no longer busy: served again
        assert (await ask(stub, "acme-1")).text


async def test_while_busy_a_tenant_asking_one_question_at_a_time_is_served(
    embedder, tmp_path, monkeypatch
):
    """Its calls never overlap, so however many it makes it queues nothing behind anyone:
    found by the bench, where such a tenant was refused during another's bulk ingest."""
    monkeypatch.setattr(busy_shedding.LoopBusy, "level", lambda self: 1.0)
    monkeypatch.setattr(busy_shedding, "WINDOW_S", 600.0)
    async with suite(embedder, tmp_path, busy_shed_threshold=0.3) as running:
        stub = pb_grpc.QueryServiceStub(running.channel)
        assert (await ask(stub, "globex")).text
        for _ in range(10):
            assert (await ask(stub, "acme-1")).text


async def test_a_keys_limit_leaves_the_other_keys_of_its_tenant_alone(embedder, tmp_path):
    async with suite(embedder, tmp_path, principal_rate_limit=0.5, principal_burst=1) as running:
        stub = pb_grpc.QueryServiceStub(running.channel)
        await ask(stub, "acme-1")
        assert error_info(await refused(stub, "acme-1")).reason == "RATE_LIMITED"
        await ask(stub, "acme-2")


async def test_stalled_streams_hold_only_their_tenants_share_and_are_cut(embedder, tmp_path):
    limits = {
        "tenant_max_concurrent": 3,
        "connection_max_streams": 2,
        "stream_write_timeout_s": 1.5,
    }
    async with suite(embedder, tmp_path, **limits) as running:
        stub = pb_grpc.QueryServiceStub(running.channel)
        request = pb.StreamQueryRequest(question="What causes tides?").SerializeToString()
        first, second = StalledClient(running.address), StalledClient(running.address)
        try:
            for _ in range(2):
                first.open(STREAM_QUERY, request, auth("acme-1"))
            # One connection: its third stream is refused, whatever its tenant may hold.
            third = first.open(STREAM_QUERY, request, auth("acme-1"))
            assert await asyncio.to_thread(first.status, third) == RESOURCE_EXHAUSTED
            second.open(STREAM_QUERY, request, auth("acme-2"))
            await asyncio.sleep(0.3)  # the three are running, their replies held back
            assert error_info(await refused(stub, "acme-1")).reason == "TENANT_CONCURRENCY"
            assert (await ask(stub, "globex")).text  # another tenant: served at once
            # Each stalled write is cut after the timeout; the tenant's share comes back.
            deadline = time.monotonic() + 10
            while True:
                try:
                    await ask(stub, "acme-1")
                    break
                except grpc.aio.AioRpcError:
                    assert time.monotonic() < deadline, "the stalled streams were never cut"
                    await asyncio.sleep(0.2)
        finally:
            first.close()
            second.close()
        stalls = running.host.metrics.registry.get_sample_value(
            "rag_stream_stalls_total", {"service": "query", "method": STREAM_QUERY}
        )
        assert stalls == 3


async def test_ingest_is_limited_like_queries(embedder, tmp_path):
    async with suite(embedder, tmp_path, tenant_rate_limit=1, tenant_burst=1) as running:
        documents = doc_grpc.DocumentServiceStub(running.channel)
        ingest = doc_pb.IngestDocumentsRequest(documents=[common_pb2.Document(id="d", text="t")])
        await documents.IngestDocuments(ingest, metadata=auth("acme-1"), timeout=30)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await documents.IngestDocuments(ingest, metadata=auth("acme-1"), timeout=30)
        assert error_info(caught.value).reason == "RATE_LIMITED"
