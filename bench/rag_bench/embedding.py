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
    as questions: the lane the in-process encode below stands for."""
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


def in_process_texts_per_s() -> float:
    """The same texts, one `encode` call of 32 per round, in this process, on the backend
    the service runs."""
    from rag_embedding.__main__ import model_loader
    from rag_embedding.config import EmbeddingSettings
    from rag_embedding.embedder import Purpose

    model = model_loader(EmbeddingSettings(batch_size=CALLERS))()
    model.encode(_texts(-1), Purpose.QUERY)
    started = time.perf_counter()
    for round_ in range(ROUNDS):
        model.encode(_texts(round_), Purpose.QUERY)
    return CALLERS * ROUNDS / (time.perf_counter() - started)
