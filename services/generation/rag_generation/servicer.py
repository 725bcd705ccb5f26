"""gRPC edge of the generation service: converts and delegates to the Generator."""

from __future__ import annotations

from collections.abc import AsyncIterator

from rag.v1 import generation_service_pb2 as pb
from rag.v1 import generation_service_pb2_grpc as pb_grpc
from rag_common.server.host import Servicer
from rag_generation import convert
from rag_generation.generator import Generator, StreamEnd


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


def servicers(generator: Generator) -> list[Servicer]:
    """The servicers a generation process hosts."""
    return [
        Servicer(
            GenerationServicer(generator),
            pb_grpc.add_GenerationServiceServicer_to_server,
            pb.DESCRIPTOR.services_by_name["GenerationService"].full_name,
        )
    ]
