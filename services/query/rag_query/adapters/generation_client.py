"""GenerationService over gRPC, as the query core's AnswerGenerator."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from rag.v1 import generation_service_pb2 as pb
from rag.v1 import generation_service_pb2_grpc as pb_grpc
from rag_common.client.channel import ServiceClient
from rag_common.convert import source_to_pb
from rag_common.domain import ScoredChunk
from rag_common.security.identity import Identity
from rag_query.models import GeneratedText, QueryOptions


def _input(question: str, sources: Sequence[ScoredChunk], options: QueryOptions):
    return pb.GenerationInput(
        question=question,
        sources=[source_to_pb(s) for s in sources],
        max_tokens=options.max_tokens,
        provider=options.provider,
    )


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
