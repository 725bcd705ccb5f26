"""GenerationService over gRPC, as the query core's AnswerGenerator."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Sequence

from rag.v1 import generation_service_pb2 as pb
from rag.v1 import generation_service_pb2_grpc as pb_grpc
from rag_common import status
from rag_common.client.channel import ServiceClient
from rag_common.convert import source_to_pb
from rag_common.domain import ScoredChunk
from rag_common.security.identity import Identity
from rag_query.models import Draft, GeneratedText, QueryOptions


def _input(question: str, sources: Sequence[ScoredChunk], options: QueryOptions):
    return pb.GenerationInput(
        question=question,
        sources=[source_to_pb(s) for s in sources],
        max_tokens=options.max_tokens,
        provider=options.provider,
    )


def _timeout_ms(deadline: float | None, now: float) -> int:
    """What is left of a deadline in whole milliseconds (at least 1); 0 for none."""
    return 0 if deadline is None else max(1, math.ceil((deadline - now) * 1000))


def _generated(response: pb.GenerateResponse) -> GeneratedText:
    return GeneratedText(
        text=response.text,
        provider=response.provider,
        input_tokens=response.usage.input_tokens,
        output_tokens=response.usage.output_tokens,
        cost_usd=response.usage.cost_usd,
        cited_sources=tuple(response.cited_sources),
        partial=response.partial,
        failed_providers=tuple(response.failed_providers),
    )


class GenerationClient(ServiceClient):
    """Calls GenerationService."""

    dependency = "generation"
    service = "rag.v1.GenerationService"
    stub = pb_grpc.GenerationServiceStub

    async def generate(
        self,
        question: str,
        sources: Sequence[ScoredChunk],
        options: QueryOptions,
        identity: Identity,
    ) -> GeneratedText:
        """The whole answer."""
        request = pb.GenerateRequest(input=_input(question, sources, options))
        response = await self._unary("Generate", request, identity)
        return _generated(response)

    async def stream(
        self,
        question: str,
        sources: Sequence[ScoredChunk],
        options: QueryOptions,
        identity: Identity,
    ) -> AsyncIterator[str | GeneratedText]:
        """Pieces of the answer, then its summary."""
        request = pb.StreamGenerateRequest(input=_input(question, sources, options))
        async for message in self._stream("StreamGenerate", request, identity):
            if message.HasField("done"):
                yield _generated(message.done)
            else:
                yield message.delta

    async def generate_batch(
        self, drafts: Sequence[Draft], identity: Identity
    ) -> AsyncIterator[tuple[int, GeneratedText | Exception]]:
        """Several answers for the caller in one call, each under its own deadline: each
        draft's index and its answer, or the error it alone ended with, as each is written."""
        now = time.monotonic()
        request = pb.GenerateBatchRequest(
            items=[
                pb.GenerateBatchItem(
                    input=_input(d.question, d.sources, d.options),
                    timeout_ms=_timeout_ms(d.deadline, now),
                )
                for d in drafts
            ]
        )
        async for message in self._stream("GenerateBatch", request, identity):
            for outcome in message.outcomes:
                if outcome.HasField("response"):
                    yield outcome.index, _generated(outcome.response)
                else:
                    yield (
                        outcome.index,
                        status.from_bytes(outcome.error, dependency=self.dependency),
                    )
