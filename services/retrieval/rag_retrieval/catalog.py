"""The document catalogue: what chunk 0 of a document records of it, and a tenant's documents
listed newest first, a page at a time, with a token that resumes after the last one shown."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from typing import Any

from rag_common.domain import DocumentInfo, DocumentInput, DocumentPage
from rag_common.errors import InvalidArgument
from rag_retrieval.chunking import PAGE_BREAK

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


def record(document: DocumentInput, ingested_by: str, ingested_at: float) -> dict[str, Any]:
    """What is stored of `document` beside its chunks (on chunk 0)."""
    return {
        "media_type": document.media_type,
        "chars": len(document.text),
        "pages": document.text.count(PAGE_BREAK) + 1 if PAGE_BREAK in document.text else 0,
        "sha256": hashlib.sha256(document.text.encode()).hexdigest(),
        "ingested_at": ingested_at,
        "ingested_by": ingested_by,
    }


def page_of(documents: Sequence[DocumentInfo], page_size: int, token: str) -> DocumentPage:
    """The page of `documents` (newest first, then by id) that starts after `token`."""
    if not 0 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidArgument("page_size", f"must be between 1 and {MAX_PAGE_SIZE}, or 0")
    size = page_size or DEFAULT_PAGE_SIZE
    ordered = sorted(documents, key=_order)
    after = _decode(token)
    if after is not None:
        ordered = [d for d in ordered if _order(d) > after]
    page = ordered[:size]
    more = len(ordered) > size
    return DocumentPage(page, _encode(_order(page[-1])) if more else "")


def _order(document: DocumentInfo) -> tuple[float, str]:
    return (-document.ingested_at, document.document_id)


def _encode(position: tuple[float, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode()


def _decode(token: str) -> tuple[float, str] | None:
    if not token:
        return None
    try:
        newest, document_id = json.loads(base64.urlsafe_b64decode(token.encode()))
        return (float(newest), str(document_id))
    except (ValueError, TypeError, binascii.Error):
        raise InvalidArgument("page_token", "not a token this service gave") from None
