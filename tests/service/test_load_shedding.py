"""Past its concurrency bound a service refuses at once instead of queueing."""

from __future__ import annotations

import asyncio
import time

import grpc

from rag.v1 import generation_service_pb2 as pb
from rag.v1 import generation_service_pb2_grpc as pb_grpc
from rag_common.settings import ServiceSettings
from rag_generation.__main__ import build_generator
from rag_generation.config import GenerationSettings
from rag_generation.servicer import servicers
from tests.conftest import start_host
from tests.support.fake_llm import FakeLLMServer
from tests.support.signed import signed_channel


async def test_calls_past_the_bound_get_resource_exhausted_at_once():
    fake = FakeLLMServer().start()
    fake.hang_s = 1.5
    fake.reset("hang")
    generator = build_generator(
        GenerationSettings(
            providers=[
                {
                    "name": "slow",
                    "kind": "openai",
                    "model": "m",
                    "base_url": f"{fake.url}/v1",
                    "timeout_s": 5.0,
                }
            ]
        )
    )
    await generator.start()
    host = await start_host(
        servicers(generator), ServiceSettings(port=0, max_concurrent_rpcs=2, grace_period_s=1)
    )
    try:
        async with signed_channel(f"127.0.0.1:{host.port}", "generation") as channel:
            stub = pb_grpc.GenerationServiceStub(channel)
            request = pb.GenerateRequest(input=pb.GenerationInput(question="q"))

            async def call() -> tuple[str, float]:
                started = time.monotonic()
                try:
                    await stub.Generate(request, timeout=10)
                    return "OK", time.monotonic() - started
                except grpc.aio.AioRpcError as exc:
                    return exc.code().name, time.monotonic() - started

            outcomes = await asyncio.gather(*(call() for _ in range(6)))
        codes = sorted(code for code, _ in outcomes)
        assert codes == ["OK", "OK"] + ["RESOURCE_EXHAUSTED"] * 4
        shed = [elapsed for code, elapsed in outcomes if code == "RESOURCE_EXHAUSTED"]
        admitted = [elapsed for code, elapsed in outcomes if code == "OK"]
        assert max(shed) < min(admitted)  # refused without waiting for a slot
    finally:
        await host.stop(0)
        await generator.close()
        fake.stop()
