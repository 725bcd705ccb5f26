"""The document core: the public ingest and delete calls, forwarded to retrieval.

Every public write passes here, so this is where a tenant's corpus version moves and its
cached answers stop being served, and where documents given as files become text.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence

from redis.exceptions import RedisError

from rag_common import context
from rag_common.document_ids import check_delete, check_document_id
from rag_common.domain import (
    DocumentInfo,
    DocumentInput,
    DocumentListing,
    DocumentPage,
    UpsertResult,
)
from rag_common.errors import InvalidArgument, RagError, Unavailable
from rag_common.reasons import Reason
from rag_common.security.identity import Identity
from rag_query.conversion import media
from rag_query.conversion.converters import Converted
from rag_query.conversion.sandbox import Sandbox
from rag_query.corpus import CorpusVersions
from rag_query.maintenance import Maintenance
from rag_query.ports import DocumentWriter

log = logging.getLogger(__name__)


class Documents:
    """Stores and deletes the caller's documents unless maintenance is on."""

    def __init__(
        self,
        writer: DocumentWriter,
        maintenance: Maintenance,
        versions: CorpusVersions | None = None,
        *,
        sandbox: Sandbox | None = None,
        forget_cached: Callable[[str], Awaitable[None]] | None = None,
        chars_per_s: float = 10_000.0,
        base_timeout_s: float = 30.0,
    ) -> None:
        self._writer = writer
        self._sandbox = sandbox or Sandbox()
        # Drops every cached copy of a tenant's content (the engine's caches).
        self._forget_cached = forget_cached or _nothing_cached
        self._maintenance = maintenance
        self._versions = versions
        # Without a deadline from the caller, an ingest gets the time its size needs:
        # the fixed call timeout alone would cut off every large document, however allowed.
        self._chars_per_s = chars_per_s
        self._base_timeout_s = base_timeout_s

    async def upsert(
        self, documents: Sequence[DocumentInput], identity: Identity
    ) -> list[UpsertResult]:
        """Store documents in the caller's tenant."""
        self._maintenance.check()
        for i, document in enumerate(documents):  # an id retrieval would refuse goes no further
            check_document_id(document.id, f"documents[{i}].id")
        conversions = await self._convert(documents)
        documents = [
            _as_text(document, converted)
            for document, converted in zip(documents, conversions, strict=True)
        ]
        stored: list[UpsertResult] = []
        try:
            # Even a failed call may have changed something: the version moves either way.
            async with self._changing(identity):
                with self._time_for(documents):
                    async for result in self._writer.upsert(documents, identity):
                        stored.append(result)
        except RagError as exc:
            if isinstance(exc, InvalidArgument):
                raise  # rejected before anything was stored
            if len(stored) < len(documents):  # else only the end of the stream was lost
                raise _incomplete(exc, documents, len(stored)) from None
        return [
            _with_conversion(result, converted)
            for result, converted in zip(stored, conversions, strict=False)
        ]

    async def _convert(self, documents: Sequence[DocumentInput]) -> list[Converted | None]:
        """Each document given as a file converted to text (None for those given as text),
        all before anything is stored; the first refused, by position, is the error."""

        async def one(i: int, document: DocumentInput) -> Converted | None:
            where = f"documents[{i}]"
            if not document.content:
                if document.media_type and document.media_type not in media.TEXT_TYPES:
                    raise InvalidArgument(f"{where}.media_type", "applies to `content` only")
                return None
            if document.text:
                raise InvalidArgument(where, "give `text` or `content`, not both")
            found = media.sniff(document.content, document.media_type, field=f"{where}.content")
            return await self._sandbox.convert(document.content, found, field=f"{where}.content")

        outcomes = await asyncio.gather(
            *(one(i, d) for i, d in enumerate(documents)), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return outcomes  # type: ignore[return-value]

    async def list_documents(self, listing: DocumentListing, identity: Identity) -> DocumentPage:
        """One page of the caller's tenant's documents, newest first."""
        return await self._writer.list_documents(listing, identity)

    async def get_document(self, document_id: str, identity: Identity) -> DocumentInfo:
        """One document of the caller's tenant."""
        check_document_id(document_id, "document_id")
        return await self._writer.get_document(document_id, identity)

    async def erase_tenant(self, confirm_tenant: str, identity: Identity) -> tuple[int, int]:
        """Erase every document of the caller's tenant and every cached copy of its content:
        (documents, chunks) erased. Safe to repeat after a failure part-way."""
        self._maintenance.check()
        if confirm_tenant != identity.tenant:
            raise InvalidArgument("confirm_tenant", "must name the caller's own tenant")
        # The version moves first and last (see CorpusVersions.changing): no replica serves
        # an answer cached before the erasure, whatever it still holds in memory.
        async with self._changing(identity):
            erased = await self._writer.erase_tenant(identity)
        try:
            await self._forget_cached(identity.tenant)
        except RedisError as exc:
            raise Unavailable(
                f"the documents are erased, but cached copies in Redis are not yet ({exc}); "
                "call EraseTenantData again",
                reason=Reason.DEPENDENCY_UNAVAILABLE,
                metadata={"dependency": "redis"},
            ) from None
        log.info("tenant erased", extra={"documents": erased[0], "chunks": erased[1]})
        return erased

    def _time_for(self, documents: Sequence[DocumentInput]) -> contextlib.AbstractContextManager:
        """The caller's deadline if it set one, else one that fits these documents."""
        if context.has_deadline():
            return contextlib.nullcontext()
        chars = sum(len(d.text) for d in documents)
        return context.tighter_deadline(self._base_timeout_s + chars / self._chars_per_s)

    async def delete(self, document_ids: Sequence[str], identity: Identity) -> int:
        """Delete documents of the caller's tenant."""
        self._maintenance.check()
        check_delete(document_ids)  # refused here: not forwarded, and no version moves
        async with self._changing(identity):
            return await self._writer.delete(document_ids, identity)

    def _changing(self, identity: Identity) -> contextlib.AbstractAsyncContextManager:
        """Where the write is recorded for every replica (see CorpusVersions.changing)."""
        if self._versions is None:
            return contextlib.nullcontext()
        return self._versions.changing(identity.tenant)


async def _nothing_cached(tenant: str) -> None:
    return None


def _as_text(document: DocumentInput, converted: Converted | None) -> DocumentInput:
    """The document as retrieval stores it: text, titled by its file when it has no title."""
    if converted is None:
        return document
    return dataclasses.replace(
        document,
        text=converted.text,
        title=document.title or converted.title,
        content=b"",
        media_type=converted.media_type,
    )


def _with_conversion(result: UpsertResult, converted: Converted | None) -> UpsertResult:
    if converted is None:
        return result
    return dataclasses.replace(
        result,
        media_type=converted.media_type,
        pages=converted.pages,
        pages_without_text=converted.pages_without_text,
    )


def _incomplete(cause: RagError, documents: Sequence[DocumentInput], stored: int) -> RagError:
    """`cause`, saying how many documents were stored, so the caller can send just the rest.

    Documents are stored in request order, so the stored ones are the first `stored`. Each
    later one is wholly its old or wholly its new version; ingesting it again is safe.
    """
    if stored == 0:
        message = f"{cause.message}; no document was stored"
        metadata = {**cause.metadata, "stored_documents": "0"}
    else:
        retry_from = documents[stored].id
        message = (
            f"{cause.message}; the first {stored} of {len(documents)} documents were stored, "
            f"ingest again from '{retry_from}'"
        )
        metadata = {**cause.metadata, "stored_documents": str(stored), "retry_from": retry_from}
    return type(cause)(message, reason=cause.reason, metadata=metadata)
