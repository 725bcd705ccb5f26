"""Protobuf <-> domain conversion for the embedding service."""

from __future__ import annotations

from rag.v1 import embedding_service_pb2 as pb
from rag_embedding.embedder import ModelInfo, Purpose

_PURPOSES = {
    pb.EMBEDDING_PURPOSE_UNSPECIFIED: Purpose.DOCUMENT,
    pb.EMBEDDING_PURPOSE_DOCUMENT: Purpose.DOCUMENT,
    pb.EMBEDDING_PURPOSE_QUERY: Purpose.QUERY,
}


def purpose_from_pb(value: int) -> Purpose:
    """Map the wire enum to Purpose; unknown values count as document."""
    return _PURPOSES.get(value, Purpose.DOCUMENT)


def embed_response_to_pb(vectors: list[list[float]], model: str) -> pb.EmbedResponse:
    """Build the Embed response."""
    return pb.EmbedResponse(embeddings=[pb.Embedding(values=v) for v in vectors], model=model)


def model_info_to_pb(info: ModelInfo) -> pb.GetModelInfoResponse:
    """Build the GetModelInfo response."""
    return pb.GetModelInfoResponse(
        model=info.model,
        dimension=info.dimension,
        max_sequence_length=info.max_sequence_length,
        max_texts=info.max_texts,
        max_text_chars=info.max_text_chars,
    )
