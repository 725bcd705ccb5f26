"""Questions that wait for their embedding at the same moment share one Embed call.

The rule of the embedding service's own batcher, one hop earlier: take what is waiting, never
wait for more. A question is sent at once while fewer than `max_in_flight` of its caller's
calls are out (so a lone one pays nothing, and the embedding service still has calls to overlap
its work with); beyond that its caller's next questions queue and go together the moment a
call returns. Only questions of
one caller share a call (the call acts for that caller, and embeddings are cached per
tenant). Each question keeps its own deadline and cancellation; a call refused as invalid
is sent again one question at a time, so one question's error is never another's.

Measured on the 2-core VM (32 questions at once, new ones): one call out per caller cut Embed
calls to 0.15 a question but throughput by 40 % (the embedding service, which batches what
reaches it, sat idle between calls); four out give 0.43 calls a question at the throughput
of no coalescing at all (114 against 111 questions/s), two 0.28 (100 against 104).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from rag_common import context
from rag_common.errors import InvalidArgument
from rag_common.security.identity import Identity


class TextEmbedder(Protocol):
    """What embeds texts for the caller of the call in progress (EmbeddingClient)."""

    async def embed(
        self, texts: Sequence[str], purpose: Literal["query", "document"]
    ) -> list[list[float]]:
        """One vector per text, in order."""
        ...


@dataclass(eq=False)
class _Question:
    """One question waiting for its vector."""

    text: str
    vector: asyncio.Future[list[float]]
    deadline: float | None
    request_id: str


@dataclass(eq=False)
class _Lane:
    """One caller's questions not yet sent, and how many of its calls are out."""

    waiting: list[_Question] = field(default_factory=list)
    in_flight: int = 0


class CoalescingEmbedder:
    """A TextEmbedder that sends concurrent single questions of one caller in one call;
    everything else passes straight through. `calls` and `texts` count what it sent."""

    def __init__(
        self, embedder: TextEmbedder, *, max_in_flight: int = 4, max_texts: int = 32
    ) -> None:
        self._embedder = embedder
        self._max_in_flight = max_in_flight
        self._max_texts = max_texts
        self._lanes: dict[Identity | None, _Lane] = {}
        self._sending: set[asyncio.Task] = set()
        self.calls = 0
        self.texts = 0

    async def embed(
        self, texts: Sequence[str], purpose: Literal["query", "document"]
    ) -> list[list[float]]:
        """One vector per text, in order."""
        if purpose != "query" or len(texts) != 1:
            self.calls, self.texts = self.calls + 1, self.texts + len(texts)
            return await self._embedder.embed(texts, purpose)
        identity = context.caller()
        lane = self._lanes.setdefault(identity, _Lane())
        question = _Question(
            texts[0],
            asyncio.get_running_loop().create_future(),
            context.deadline(),
            context.request_id(),
        )
        lane.waiting.append(question)
        if lane.in_flight < self._max_in_flight:
            lane.in_flight += 1
            task = asyncio.create_task(self._send_while_waiting(identity, lane))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
        try:
            return [await asyncio.shield(question.vector)]
        finally:
            if question in lane.waiting:  # gone before it was sent: nobody sends it now
                lane.waiting.remove(question)
            question.vector.cancel()  # done already, or nobody is left to read it

    async def _send_while_waiting(self, identity: Identity | None, lane: _Lane) -> None:
        """Send the lane's waiting questions, all that wait at once, until none wait."""
        try:
            while lane.waiting:
                batch = lane.waiting[: self._max_texts]
                del lane.waiting[: len(batch)]
                await self._send(identity, batch)
        finally:
            lane.in_flight -= 1
            if not lane.in_flight and not lane.waiting and self._lanes.get(identity) is lane:
                del self._lanes[identity]

    async def _send(self, identity: Identity | None, batch: list[_Question]) -> None:
        # The call acts for the caller, until the last of its questions gives up.
        deadlines = [q.deadline for q in batch]
        latest = None if None in deadlines else max(d for d in deadlines if d is not None)
        context.enter(context.RequestScope(batch[0].request_id, latest))
        context.set_identity(identity)
        self.calls, self.texts = self.calls + 1, self.texts + len(batch)
        try:
            vectors = await self._embedder.embed([q.text for q in batch], "query")
        except InvalidArgument as exc:
            if len(batch) == 1:
                _settle(batch, error=exc)
                return
            for question in batch:  # whose text it was is for each one to find out
                await self._send(identity, [question])
        except asyncio.CancelledError:
            for question in batch:
                question.vector.cancel()
            raise
        except Exception as exc:
            _settle(batch, error=exc)
        else:
            _settle(batch, vectors=vectors)


def _settle(
    batch: list[_Question],
    *,
    vectors: list[list[float]] | None = None,
    error: Exception | None = None,
) -> None:
    for number, question in enumerate(batch):
        if question.vector.done():  # its caller went away
            continue
        if vectors is not None:
            question.vector.set_result(vectors[number])
        else:
            question.vector.set_exception(error)
