"""Client of EmbeddingService, shared by the query and retrieval services."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from rag.v1 import embedding_service_pb2 as pb
from rag.v1 import embedding_service_pb2_grpc as pb_grpc
from rag_common import context
from rag_common.client.channel import ServiceClient

_PURPOSES = {
    "query": pb.EMBEDDING_PURPOSE_QUERY,
    "document": pb.EMBEDDING_PURPOSE_DOCUMENT,
}


class EmbeddingClient(ServiceClient):
    """Embeds texts through EmbeddingService (the TextEmbedder port over gRPC)."""

    dependency = "embedding"
    service = "rag.v1.EmbeddingService"
    stub = pb_grpc.EmbeddingServiceStub

    async def embed(
        self, texts: Sequence[str], purpose: Literal["query", "document"]
    ) -> list[list[float]]:
        """One vector per text, in order, for the tenant of the call in progress (its
        vectors are cached apart from every other tenant's)."""
        vectors, _ = await self.embed_tagged(texts, purpose)
        return vectors

    async def embed_tagged(
        self, texts: Sequence[str], purpose: Literal["query", "document"]
    ) -> tuple[list[list[float]], str]:
        """`embed`'s vectors and the model that made them (replicas may differ mid-rollout)."""
        request = pb.EmbedRequest(texts=texts, purpose=_PURPOSES[purpose])
        # A question's embedding is light and waited on: worth a hedge. An ingest batch is
        # neither.
        response = await self._unary("Embed", request, context.caller(), hedge=purpose == "query")
        return [list(e.values) for e in response.embeddings], response.model
