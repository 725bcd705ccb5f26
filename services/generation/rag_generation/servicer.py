"""gRPC edge of the generation service: converts and delegates to the Generator."""

from __future__ import annotations

from collections.abc import AsyncIterator

from rag.v1 import generation_service_pb2 as pb
from rag.v1 import generation_service_pb2_grpc as pb_grpc
from rag_common import status
from rag_common.errors import RagError
from rag_common.server.host import Servicer
from rag_generation import convert
from rag_generation.batch import BatchItem, answers_as_written
from rag_generation.generator import Generator, StreamEnd
from rag_generation.models import Generation


class GenerationServicer(pb_grpc.GenerationServiceServicer):
    """rag.v1.GenerationService."""

    def __init__(self, generator: Generator) -> None:
        self._generator = generator

    async def Generate(self, request: pb.GenerateRequest, context) -> pb.GenerateResponse:
        """Generate a whole answer."""
        generation = await self._generator.generate(convert.request_from_pb(request.input))
        return convert.generation_to_pb(generation)

    async def StreamGenerate(
        self, request: pb.StreamGenerateRequest, context
    ) -> AsyncIterator[pb.StreamGenerateResponse]:
        """Stream an answer, then its summary."""
        async for item in self._generator.stream(convert.request_from_pb(request.input)):
            if isinstance(item, StreamEnd):
                yield pb.StreamGenerateResponse(done=convert.generation_to_pb(item.generation))
            else:
                yield pb.StreamGenerateResponse(delta=item)

    async def GenerateBatch(
        self, request: pb.GenerateBatchRequest, context
    ) -> AsyncIterator[pb.GenerateBatchResponse]:
        """Several answers for the caller at once, each sent the moment it is written."""
        items = [
            BatchItem(convert.request_from_pb(item.input), item.timeout_ms / 1000 or None)
            for item in request.items
        ]
        async for finished in answers_as_written(self._generator, items):
            yield pb.GenerateBatchResponse(outcomes=[_outcome(*o) for o in finished])


def _outcome(index: int, result: Generation | RagError) -> pb.GenerateOutcome:
    if isinstance(result, RagError):
        return pb.GenerateOutcome(index=index, error=status.to_bytes(result))
    return pb.GenerateOutcome(index=index, response=convert.generation_to_pb(result))


def servicers(generator: Generator) -> list[Servicer]:
    """The servicers a generation process hosts."""
    return [
        Servicer(
            GenerationServicer(generator),
            pb_grpc.add_GenerationServiceServicer_to_server,
            pb.DESCRIPTOR.services_by_name["GenerationService"].full_name,
        )
    ]
