"""Document ids and delete requests: checked alike by the query service, before anything is
forwarded or audited, and by retrieval, which owns the store."""

from __future__ import annotations

import re
from collections.abc import Sequence

from rag_common.errors import InvalidArgument

DOCUMENT_ID = re.compile(r"[A-Za-z0-9._:/-]{1,128}")  # used with fullmatch: no "\n" slips by
MAX_DELETE_IDS = 1000


def check_document_id(document_id: str, field: str) -> None:
    """A document id: 1 to 128 characters from [A-Za-z0-9._:/-]."""
    if not DOCUMENT_ID.fullmatch(document_id):
        raise InvalidArgument(
            field, "must be 1 to 128 characters from letters, digits and . _ : / -"
        )


def check_delete(document_ids: Sequence[str]) -> None:
    """Validate a delete request."""
    if not document_ids:
        raise InvalidArgument("document_ids", "at least one id is required")
    if len(document_ids) > MAX_DELETE_IDS:
        raise InvalidArgument("document_ids", f"at most {MAX_DELETE_IDS} ids per call")
    for i, document_id in enumerate(document_ids):
        check_document_id(document_id, f"document_ids[{i}]")
