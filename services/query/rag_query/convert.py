"""Protobuf <-> domain conversion for the query and document services."""

from __future__ import annotations

from collections.abc import Sequence

from rag.v1 import common_pb2, document_service_pb2
from rag.v1 import query_service_pb2 as pb
from rag_common.convert import conditions_from_pb, search_mode_from_pb, source_to_pb
from rag_common.domain import UpsertResult
from rag_query.models import Answer, QueryOptions, Question


def question_from_pb(request: pb.QueryRequest | pb.StreamQueryRequest) -> Question:
    """A Query or StreamQuery request as a Question."""
    options = request.options
    return Question(
        text=request.question,
        options=QueryOptions(
            top_k=options.top_k,
            conditions=conditions_from_pb(options.filters, "options.filters"),
            score_threshold=(
                options.score_threshold if options.HasField("score_threshold") else None
            ),
            max_tokens=options.max_tokens,
            provider=options.provider,
            budget_ms=options.budget_ms,
            search_mode=search_mode_from_pb(options.search_mode, "options.search_mode"),
            rerank=options.rerank if options.HasField("rerank") else None,
        ),
    )


def answer_to_pb(answer: Answer, *, snippet_chars: int) -> pb.QueryResponse:
    """An Answer, source texts shortened to `snippet_chars`."""
    t, g = answer.timings, answer.generated
    return pb.QueryResponse(
        text=answer.text,
        sources=sources_to_pb(answer.sources, snippet_chars=snippet_chars),
        provider=g.provider,
        usage=common_pb2.Usage(
            input_tokens=g.input_tokens, output_tokens=g.output_tokens, cost_usd=g.cost_usd
        ),
        cited_sources=g.cited_sources,
        partial=g.partial,
        failed_providers=g.failed_providers,
        degraded=answer.degraded,
        cache=answer.cache,
        cache_similarity=answer.cache_similarity,
        cached_question=answer.cached_question,
        timings=common_pb2.StageTimings(
            embed_ms=t.embed_ms,
            retrieve_ms=t.retrieve_ms,
            generate_ms=t.generate_ms,
            total_ms=t.total_ms,
            queued_ms=t.queued_ms,
        ),
        request_id=answer.request_id,
    )


def sources_to_pb(sources, *, snippet_chars: int) -> list[common_pb2.Source]:
    """Sources as returned to a public caller."""
    return [source_to_pb(s, max_text_chars=snippet_chars) for s in sources]


def ingest_response_to_pb(
    results: Sequence[UpsertResult],
) -> document_service_pb2.IngestDocumentsResponse:
    """The IngestDocuments response."""
    return document_service_pb2.IngestDocumentsResponse(
        documents=[
            document_service_pb2.IngestedDocument(
                document_id=r.document_id,
                chunks=r.chunks,
                media_type=r.media_type,
                pages=r.pages,
                pages_without_text=r.pages_without_text,
            )
            for r in results
        ]
    )
