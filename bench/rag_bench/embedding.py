"""Embedding throughput: many single-text callers over gRPC vs. one in-process batch call."""

from __future__ import annotations

import asyncio
import time

import grpc

from rag.v1 import embedding_service_pb2 as pb
from rag.v1 import embedding_service_pb2_grpc as pb_grpc
from rag_common.security.credentials import Credentials

CALLERS = 32
ROUNDS = 12


def _texts(round_: int) -> list[str]:
    # Distinct texts every round, so no result can be shared or cached.
    return [
        f"Round {round_} question {i}: how does the service handle request {i}?"
        for i in range(CALLERS)
    ]


async def service_texts_per_s(address: str, credentials: Credentials) -> float:
    """32 concurrent callers, one text each, against EmbeddingService (dynamic batching),
    as questions: the lane the in-process yardstick over `texts()` encodes in."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.EmbeddingServiceStub(channel)

        async def one(text: str) -> None:
            metadata = credentials.metadata(
                "embedding", None, method="/rag.v1.EmbeddingService/Embed"
            )
            request = pb.EmbedRequest(texts=[text], purpose=pb.EMBEDDING_PURPOSE_QUERY)
            await stub.Embed(request, timeout=60, metadata=metadata)

        await asyncio.gather(*(one(t) for t in _texts(-1)))  # warm-up
        started = time.perf_counter()
        for round_ in range(ROUNDS):
            await asyncio.gather(*(one(t) for t in _texts(round_)))
        return CALLERS * ROUNDS / (time.perf_counter() - started)


def texts() -> list[str]:
    """Every round's texts, in order: what the in-process yardstick encodes, 32 a call."""
    return [text for round_ in range(ROUNDS) for text in _texts(round_)]
