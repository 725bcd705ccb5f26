"""What the query core needs from the services behind it; gRPC or in-process adapters fill these."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from rag_common.domain import (
    DocumentInfo,
    DocumentInput,
    DocumentListing,
    DocumentPage,
    ScoredChunk,
    UpsertResult,
)
from rag_common.security.identity import Identity
from rag_query.models import GeneratedText, QueryOptions, RetrievedContext


class ContextRetriever(Protocol):
    """Finds the caller's chunks nearest to a question vector."""

    async def retrieve(
        self, question: str, vector: Sequence[float], options: QueryOptions, identity: Identity
    ) -> RetrievedContext:
        """Best first, inside the caller's tenant."""
        ...


class AnswerGenerator(Protocol):
    """Writes an answer from numbered sources."""

    async def generate(
        self,
        question: str,
        sources: Sequence[ScoredChunk],
        options: QueryOptions,
        identity: Identity,
    ) -> GeneratedText:
        """The whole answer, written for `identity` (whose tenant its tokens count against)."""
        ...

    def stream(
        self,
        question: str,
        sources: Sequence[ScoredChunk],
        options: QueryOptions,
        identity: Identity,
    ) -> AsyncIterator[str | GeneratedText]:
        """Pieces of text, then the GeneratedText summary."""
        ...


class DocumentWriter(Protocol):
    """Stores and deletes the caller's documents."""

    def upsert(
        self, documents: Sequence[DocumentInput], identity: Identity
    ) -> AsyncIterator[UpsertResult]:
        """Store documents, replacing earlier versions; yields each one once it is stored,
        in request order."""
        ...

    async def delete(self, document_ids: Sequence[str], identity: Identity) -> int:
        """Delete documents; returns the chunks removed."""
        ...

    async def list_documents(self, listing: DocumentListing, identity: Identity) -> DocumentPage:
        """One page of the tenant's documents, newest first."""
        ...

    async def get_document(self, document_id: str, identity: Identity) -> DocumentInfo:
        """One document of the tenant; raises NotFound."""
        ...

    async def erase_tenant(self, identity: Identity) -> tuple[int, int]:
        """Delete every document of the tenant: (documents, chunks) deleted."""
        ...
