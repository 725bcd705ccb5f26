"""Checks on documents and queries; each failure names the offending field."""

from __future__ import annotations

import math
from collections.abc import Sequence

from rag_common.document_ids import check_document_id
from rag_common.domain import DocumentInput
from rag_common.errors import InvalidArgument
from rag_common.filters import METADATA_KEY, check_conditions
from rag_retrieval.models import RetrieveQuery

MAX_TITLE_CHARS = 512
MAX_SOURCE_CHARS = 2048
MAX_METADATA_ENTRIES = 32
MAX_METADATA_VALUE_CHARS = 256
MAX_QUERY_CHARS = 4000


def check_documents(
    documents: Sequence[DocumentInput], *, max_documents: int, max_chars: int
) -> None:
    """Validate a whole upsert before anything is stored."""
    if not documents:
        raise InvalidArgument("documents", "at least one document is required")
    if len(documents) > max_documents:
        raise InvalidArgument(
            "documents", f"{len(documents)} documents given, at most {max_documents} per call"
        )
    seen: set[str] = set()
    for i, doc in enumerate(documents):
        where = f"documents[{i}]"
        check_document_id(doc.id, f"{where}.id")
        if doc.id in seen:
            raise InvalidArgument(f"{where}.id", f"'{doc.id}' appears twice in this request")
        seen.add(doc.id)
        if not doc.text.strip():
            raise InvalidArgument(f"{where}.text", "must not be empty")
        if len(doc.text) > max_chars:
            raise InvalidArgument(
                f"{where}.text", f"{len(doc.text)} characters, at most {max_chars}"
            )
        _check_length(doc.title, MAX_TITLE_CHARS, f"{where}.title")
        _check_length(doc.source, MAX_SOURCE_CHARS, f"{where}.source")
        _check_metadata(doc.metadata, f"{where}.metadata")


def check_query(query: RetrieveQuery, *, max_top_k: int, dimension: int) -> None:
    """Validate a search request."""
    if not query.vector and not query.text.strip():
        raise InvalidArgument("query", "a question or a query vector is required")
    _check_length(query.text, MAX_QUERY_CHARS, "query")
    if query.vector and len(query.vector) != dimension:
        raise InvalidArgument(
            "query_vector", f"has {len(query.vector)} values, the model's dimension is {dimension}"
        )
    if query.vector and not all(math.isfinite(v) for v in query.vector):
        raise InvalidArgument("query_vector", "must contain only finite numbers")
    if not 0 <= query.top_k <= max_top_k:
        raise InvalidArgument("top_k", f"must be between 1 and {max_top_k} (0 for the default)")
    check_conditions(query.conditions, "filters")
    threshold = query.score_threshold
    if threshold is not None and not -1.0 <= threshold <= 1.0:
        raise InvalidArgument("score_threshold", "must be between -1 and 1")


def _check_metadata(metadata: dict[str, str] | object, field: str) -> None:
    entries = dict(metadata)  # type: ignore[call-overload]
    if len(entries) > MAX_METADATA_ENTRIES:
        raise InvalidArgument(field, f"at most {MAX_METADATA_ENTRIES} entries")
    for key, value in entries.items():
        if not METADATA_KEY.fullmatch(key):
            # Named only when short: a 5,000-character key echoed back in the field and the
            # message would make the error reply too large to send.
            named = f"{field}.{key}" if len(key) <= 64 else field
            raise InvalidArgument(named, "key must be 1 to 64 characters [A-Za-z0-9_.-]")
        _check_length(value, MAX_METADATA_VALUE_CHARS, f"{field}.{key}")


def _check_length(value: str, limit: int, field: str) -> None:
    if len(value) > limit:
        raise InvalidArgument(field, f"{len(value)} characters, at most {limit}")
