"""Protobuf <-> domain conversion for the messages in rag/v1/common.proto."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from google.protobuf.timestamp_pb2 import Timestamp

from rag.v1 import common_pb2, document_service_pb2
from rag_common.domain import (
    Condition,
    DocumentInfo,
    DocumentInput,
    DocumentPage,
    Operator,
    ScoredChunk,
)
from rag_common.errors import InvalidArgument
from rag_common.reasons import Reason

_OPERATORS = {
    common_pb2.FILTER_OPERATOR_EQUALS: Operator.EQUALS,
    common_pb2.FILTER_OPERATOR_NOT_EQUALS: Operator.NOT_EQUALS,
    common_pb2.FILTER_OPERATOR_IN: Operator.IN,
    common_pb2.FILTER_OPERATOR_NOT_IN: Operator.NOT_IN,
}
_OPERATORS_PB = {op: value for value, op in _OPERATORS.items()}
_SEARCH_MODES = {
    common_pb2.SEARCH_MODE_UNSPECIFIED: "",
    common_pb2.SEARCH_MODE_DENSE: "dense",
    common_pb2.SEARCH_MODE_HYBRID: "hybrid",
}
_SEARCH_MODES_PB = {mode: value for value, mode in _SEARCH_MODES.items()}


def search_mode_from_pb(value: int, field: str) -> str:
    """The search mode named on the wire: dense, hybrid, or empty for the server's default.

    An unknown value is rejected, naming `field`.
    """
    if value not in _SEARCH_MODES:
        raise InvalidArgument(field, f"unknown search mode {value}; use DENSE or HYBRID")
    return _SEARCH_MODES[value]


def search_mode_to_pb(mode: str) -> int:
    """A search mode back to the wire."""
    return _SEARCH_MODES_PB[mode]


def conditions_from_pb(
    filters: Iterable[common_pb2.FilterCondition], field: str = "filters"
) -> tuple[Condition, ...]:
    """Filter conditions; an unspecified or unknown operator is rejected, naming its field."""
    conditions = []
    for i, condition in enumerate(filters):
        operator = _OPERATORS.get(condition.operator)
        if operator is None:
            raise InvalidArgument(
                f"{field}[{i}].operator",
                f"unknown filter operator {condition.operator}; use EQUALS, NOT_EQUALS, IN "
                "or NOT_IN",
                reason=Reason.UNKNOWN_FILTER_OPERATOR,
            )
        conditions.append(Condition(condition.key, operator, tuple(condition.values)))
    return tuple(conditions)


def conditions_to_pb(conditions: Sequence[Condition]) -> list[common_pb2.FilterCondition]:
    """Filter conditions back to the wire."""
    return [
        common_pb2.FilterCondition(key=c.key, operator=_OPERATORS_PB[c.operator], values=c.values)
        for c in conditions
    ]


def source_to_pb(chunk: ScoredChunk, *, max_text_chars: int | None = None) -> common_pb2.Source:
    """A chunk as a wire Source, its text shortened to `max_text_chars` when given."""
    text = chunk.text
    if max_text_chars is not None and len(text) > max_text_chars:
        text = text[: max_text_chars - 1].rstrip() + "…"
    return common_pb2.Source(
        document_id=chunk.document_id,
        chunk_index=chunk.chunk_index,
        score=chunk.score,
        text=text,
        title=chunk.title,
        source=chunk.source,
        metadata=dict(chunk.metadata),
        page=chunk.page,
        section=chunk.section,
    )


def source_from_pb(source: common_pb2.Source) -> ScoredChunk:
    """A wire Source as a ScoredChunk."""
    return ScoredChunk(
        document_id=source.document_id,
        chunk_index=source.chunk_index,
        score=source.score,
        text=source.text,
        title=source.title,
        source=source.source,
        metadata=dict(source.metadata),
        page=source.page,
        section=source.section,
    )


def documents_from_pb(documents: Iterable[common_pb2.Document]) -> list[DocumentInput]:
    """Wire documents as DocumentInputs."""
    return [
        DocumentInput(
            id=d.id,
            text=d.text,
            title=d.title,
            source=d.source,
            metadata=dict(d.metadata),
            content=d.content,
            media_type=d.media_type,
        )
        for d in documents
    ]


def documents_to_pb(documents: Iterable[DocumentInput]) -> list[common_pb2.Document]:
    """DocumentInputs back to the wire (QueryService forwarding them to retrieval)."""
    return [
        common_pb2.Document(
            id=d.id,
            text=d.text,
            title=d.title,
            source=d.source,
            metadata=dict(d.metadata),
            media_type=d.media_type,  # what the text was converted from, for its record
        )
        for d in documents
    ]


# The fields a document's record has alike in both forms; the time and the map differ.
_INFO_FIELDS = (
    "document_id",
    "title",
    "source",
    "media_type",
    "chars",
    "chunks",
    "pages",
    "content_sha256",
    "ingested_by",
)


def document_info_to_pb(info: DocumentInfo) -> document_service_pb2.DocumentInfo:
    """A document's record on the wire."""
    ingested_at = Timestamp()
    ingested_at.FromNanoseconds(int(info.ingested_at * 1e9))
    return document_service_pb2.DocumentInfo(
        **{name: getattr(info, name) for name in _INFO_FIELDS},
        ingested_at=ingested_at,
        metadata=dict(info.metadata),
    )


def document_info_from_pb(info: document_service_pb2.DocumentInfo) -> DocumentInfo:
    """A wire record as a DocumentInfo."""
    return DocumentInfo(
        **{name: getattr(info, name) for name in _INFO_FIELDS},
        ingested_at=info.ingested_at.ToNanoseconds() / 1e9,
        metadata=dict(info.metadata),
    )


def document_page_to_pb(page: DocumentPage) -> document_service_pb2.ListDocumentsResponse:
    """One page of documents on the wire."""
    return document_service_pb2.ListDocumentsResponse(
        documents=[document_info_to_pb(d) for d in page.documents],
        next_page_token=page.next_page_token,
    )


def document_page_from_pb(page: document_service_pb2.ListDocumentsResponse) -> DocumentPage:
    """A wire page as a DocumentPage."""
    return DocumentPage([document_info_from_pb(d) for d in page.documents], page.next_page_token)
