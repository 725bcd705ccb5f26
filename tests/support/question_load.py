"""The load a drill runs its faults under: callers asking questions one after another."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass

import grpc

from rag.v1 import common_pb2
from rag.v1 import query_service_pb2 as pb
from rag.v1 import query_service_pb2_grpc as pb_grpc

TOPICS = ("tides", "kelp", "glaciers", "dunes")


def topic_documents() -> list[common_pb2.Document]:
    """One short document per topic: what the drills' questions find."""
    return [
        common_pb2.Document(id=t, text=f"Notes on {t}: the {t} of the north are famous.")
        for t in TOPICS
    ]


@dataclass(frozen=True)
class Call:
    """One question: when it was sent (seconds into the load), how long it took, and its
    outcome: "normal", the degradations it reported, or the status code it failed with."""

    at_s: float
    ms: float
    outcome: str

    @property
    def failed(self) -> bool:
        """Whether the call failed (its outcome is a status code)."""
        return self.outcome.isupper()


class QuestionLoad:
    """`callers` callers, each asking a new question as soon as its last one is answered,
    from entering the block until leaving it; every question is different, so none is
    answered from a cache."""

    def __init__(self, stub: pb_grpc.QueryServiceStub, metadata, callers: int) -> None:
        self._stub, self._metadata, self._callers = stub, metadata, callers
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self.began = time.monotonic()
        self.calls: list[Call] = []

    async def __aenter__(self) -> QuestionLoad:
        self.began = time.monotonic()
        self._tasks = [asyncio.ensure_future(self._ask(n)) for n in range(self._callers)]
        return self

    async def __aexit__(self, *exc_info) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    def now(self) -> float:
        """Seconds since the load began."""
        return time.monotonic() - self.began

    @property
    def outcomes(self) -> Counter[str]:
        """How many calls ended with each outcome."""
        return Counter(call.outcome for call in self.calls)

    @property
    def failed(self) -> dict[str, int]:
        """The failures by status code; empty when no call failed."""
        return {k: v for k, v in self.outcomes.items() if k.isupper()}

    async def _ask(self, number: int) -> None:
        asked = 0
        while not self._stop.is_set():
            asked += 1
            topic = TOPICS[(number + asked) % len(TOPICS)]
            request = pb.QueryRequest(
                question=f"What are the {topic} of the north, case {number}.{asked}?",
                options=pb.QueryOptions(provider="extractive"),
            )
            sent = time.monotonic()
            try:
                reply = await self._stub.Query(request, metadata=self._metadata, timeout=10)
                outcome = ",".join(reply.degraded) or "normal"
            except grpc.aio.AioRpcError as exc:
                outcome = exc.code().name
            self.calls.append(Call(sent - self.began, (time.monotonic() - sent) * 1000, outcome))
