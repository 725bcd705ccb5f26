"""The audit log: one JSON line per write, delete, admin action and denied request.

Lines go to the `rag.audit` logger (stdout like every log, marked `"audit": true`, so a
collector can route them apart). Each names the principal, tenant, action, the document
ids concerned, the outcome and the request id; never a key, a token or a document's text.
Writes and admin actions are always written. Denied requests, writes included, are written
at most once a second per action, outcome and principal, with a count of those left out,
and every id is cut to the longest a valid one can be, so a client looping on a bad key or
sending ids of megabytes cannot fill the disk.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from rag_common import context
from rag_common.security.identity import Identity

log = logging.getLogger("rag.audit")

# The outcomes that mean the caller was turned away.
DENIED = frozenset({"UNAUTHENTICATED", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED"})
MAX_IDS = 100  # ids listed per line; the count is always whole
MAX_ID_CHARS = 128  # the longest valid document id


class AuditLog:
    """Writes the audit lines of one server."""

    def __init__(self, audited: tuple[str, ...], clock=time.monotonic) -> None:
        self._audited = audited  # method prefixes whose every call is a line (writes, admin)
        self._clock = clock
        self._last: dict[tuple[str, str, str], float] = {}
        self._left_out: dict[tuple[str, str, str], int] = {}

    def record(
        self,
        method: str,
        identity: Identity | None,
        request: Any,
        code: str,
        reason: str = "",
    ) -> None:
        """One call ended with `code`: write its line if it is audited."""
        denied = code in DENIED
        if not denied and not method.startswith(self._audited):
            return
        principal = identity.principal if identity else ""
        entry: dict[str, Any] = {
            "audit": True,
            "action": method,
            "principal": principal,
            "tenant": identity.tenant if identity else "",
            "outcome": code,
        }
        if reason:
            entry["reason"] = reason
        ids = _document_ids(request)
        if ids:
            entry["document_ids"] = [_shown(i) for i in ids[:MAX_IDS]]
            entry["documents"] = len(ids)
        if denied:
            left_out = self._admit((method, code, principal))
            if left_out is None:
                return
            if left_out:
                entry["left_out"] = left_out
        entry["request_id"] = context.request_id()
        log.info("audit", extra=entry)

    def _admit(self, key: tuple[str, str, str]) -> int | None:
        now = self._clock()
        if now - self._last.get(key, -1.0) < 1.0:
            self._left_out[key] = self._left_out.get(key, 0) + 1
            return None
        if len(self._last) > 10_000:  # bounded: forget who was denied long ago
            self._last.clear()
        self._last[key] = now
        return self._left_out.pop(key, 0)


def _shown(document_id: str) -> str:
    if len(document_id) <= MAX_ID_CHARS:
        return document_id
    return f"{document_id[:MAX_ID_CHARS]}... ({len(document_id)} characters)"


def _document_ids(request: Any) -> list[str]:
    """The ids a write or delete names (ingest: its documents'; delete: the ids given)."""
    documents = getattr(request, "documents", None)
    if documents is not None:
        return [d.id for d in documents]
    ids = getattr(request, "document_ids", None)
    return list(ids) if ids is not None else []
