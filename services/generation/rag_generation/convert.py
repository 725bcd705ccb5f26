"""Protobuf <-> domain conversion for the generation service."""

from __future__ import annotations

from rag.v1 import generation_service_pb2 as pb
from rag_common.convert import source_from_pb
from rag_generation.models import Generation, GenerationRequest


def request_from_pb(message: pb.GenerationInput) -> GenerationRequest:
    """A GenerationInput as a GenerationRequest."""
    return GenerationRequest(
        question=message.question,
        sources=tuple(source_from_pb(s) for s in message.sources),
        max_tokens=message.max_tokens,
        provider=message.provider,
    )


def generation_to_pb(generation: Generation) -> pb.GenerateResponse:
    """A finished answer."""
    return pb.GenerateResponse(
        text=generation.text,
        provider=generation.provider,
        sources_used=generation.sources_used,
        failed_providers=generation.failed_providers,
    )
