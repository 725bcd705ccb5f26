"""gRPC edge of the embedding service: converts and delegates to the Embedder."""

from __future__ import annotations

from rag.v1 import embedding_service_pb2 as pb
from rag.v1 import embedding_service_pb2_grpc as pb_grpc
from rag_common.server.host import Servicer
from rag_embedding import convert
from rag_embedding.embedder import Embedder


class EmbeddingServicer(pb_grpc.EmbeddingServiceServicer):
    """rag.v1.EmbeddingService."""

    def __init__(self, embedder: Embedder) -> None:
        self._embedder = embedder

    async def Embed(self, request: pb.EmbedRequest, context) -> pb.EmbedResponse:
        """Embed a batch of texts."""
        vectors = await self._embedder.embed(
            list(request.texts), convert.purpose_from_pb(request.purpose)
        )
        return convert.embed_response_to_pb(vectors, self._embedder.info.model)

    async def GetModelInfo(
        self, request: pb.GetModelInfoRequest, context
    ) -> pb.GetModelInfoResponse:
        """Describe the loaded model."""
        return convert.model_info_to_pb(self._embedder.info)


def servicers(embedder: Embedder) -> list[Servicer]:
    """The servicers an embedding process hosts."""
    return [
        Servicer(
            EmbeddingServicer(embedder),
            pb_grpc.add_EmbeddingServiceServicer_to_server,
            pb.DESCRIPTOR.services_by_name["EmbeddingService"].full_name,
        )
    ]
