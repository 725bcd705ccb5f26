"""Protobuf <-> domain conversion for the generation service."""

from __future__ import annotations

from rag.v1 import common_pb2
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
        usage=common_pb2.Usage(
            input_tokens=generation.usage.input_tokens,
            output_tokens=generation.usage.output_tokens,
            cost_usd=generation.usage.cost_usd,
        ),
        cited_sources=generation.cited_sources,
        tier=generation.tier,
        partial=generation.partial,
    )
