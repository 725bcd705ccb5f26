"""Protobuf <-> domain conversion for the retrieval service."""

from __future__ import annotations

from collections.abc import Sequence

from rag.v1 import retrieval_service_pb2 as pb
from rag_common.convert import conditions_from_pb, search_mode_from_pb, source_to_pb
from rag_common.domain import UpsertResult
from rag_retrieval.models import RetrieveQuery, RetrieveResult


def query_from_pb(request: pb.RetrieveRequest) -> RetrieveQuery:
    """A RetrieveRequest as a RetrieveQuery."""
    return RetrieveQuery(
        text=request.query,
        vector=tuple(request.query_vector),
        top_k=request.top_k,
        conditions=conditions_from_pb(request.filters),
        score_threshold=request.score_threshold if request.HasField("score_threshold") else None,
        mode=search_mode_from_pb(request.search_mode, "search_mode"),
        rerank=request.rerank if request.HasField("rerank") else None,
    )


def retrieve_response_to_pb(result: RetrieveResult) -> pb.RetrieveResponse:
    """The Retrieve response."""
    return pb.RetrieveResponse(
        chunks=[source_to_pb(c) for c in result.chunks],
        embed_ms=result.embed_ms,
        search_ms=result.search_ms,
        rerank_ms=result.rerank_ms,
        degraded=result.degraded,
    )


def upsert_response_to_pb(results: Sequence[UpsertResult]) -> pb.UpsertDocumentsResponse:
    """The UpsertDocuments response."""
    return pb.UpsertDocumentsResponse(
        results=[pb.DocumentResult(document_id=r.document_id, chunks=r.chunks) for r in results]
    )
