"""gRPC edge of the generation service: converts and delegates to the Generator."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from rag.v1 import generation_service_pb2 as pb
from rag.v1 import generation_service_pb2_grpc as pb_grpc
from rag_common import status
from rag_common.breaker import counts_as_failure
from rag_common.context import tighter_deadline
from rag_common.errors import DeadlineExceeded, InvalidArgument, RagError
from rag_common.server.host import Servicer
from rag_generation import convert
from rag_generation.generator import Generator, StreamEnd

MAX_BATCH_ANSWERS = 32


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
        if not 1 <= len(request.items) <= MAX_BATCH_ANSWERS:
            raise InvalidArgument(
                "items",
                f"must hold 1 to {MAX_BATCH_ANSWERS} answers, not {len(request.items)}",
            )
        answers = {
            asyncio.create_task(self._answer(item)): index
            for index, item in enumerate(request.items)
        }
        # Failures of this service wait for the rest: when every answer fails so, the call
        # fails, and the caller's breaker sees what a single Generate would show it.
        failures: list[tuple[int, RagError]] = []
        try:
            pending = set(answers)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                finished = []
                for answer in done:
                    index, result = answers[answer], answer.result()
                    if isinstance(result, RagError) and counts_as_failure(result):
                        failures.append((index, result))
                    else:
                        finished.append(_outcome(index, result))
                if finished:
                    yield pb.GenerateBatchResponse(outcomes=finished)
            if len(failures) == len(answers):
                raise failures[0][1]
            if failures:
                yield pb.GenerateBatchResponse(outcomes=[_outcome(*f) for f in failures])
        finally:
            for answer in answers:
                answer.cancel()

    async def _answer(self, item: pb.GenerateBatchItem) -> pb.GenerateResponse | RagError:
        """One answer of a batch under its own time limit, or the error it alone ended with."""
        limit = (
            tighter_deadline(item.timeout_ms / 1000)
            if item.timeout_ms
            else contextlib.nullcontext(None)
        )
        try:
            with limit as seconds:
                async with asyncio.timeout(seconds):
                    generation = await self._generator.generate(convert.request_from_pb(item.input))
        except TimeoutError:
            return DeadlineExceeded("this answer's time ran out")
        except RagError as exc:
            return exc
        return convert.generation_to_pb(generation)


def _outcome(index: int, result: pb.GenerateResponse | RagError) -> pb.GenerateOutcome:
    if isinstance(result, RagError):
        return pb.GenerateOutcome(index=index, error=status.to_bytes(result))
    return pb.GenerateOutcome(index=index, response=result)


def servicers(generator: Generator) -> list[Servicer]:
    """The servicers a generation process hosts."""
    return [
        Servicer(
            GenerationServicer(generator),
            pb_grpc.add_GenerationServiceServicer_to_server,
            pb.DESCRIPTOR.services_by_name["GenerationService"].full_name,
        )
    ]
