"""The document core: the public ingest and delete calls, forwarded to retrieval."""

from __future__ import annotations

from collections.abc import Sequence

from rag_common.domain import DocumentInput, UpsertResult
from rag_common.identity import Identity
from rag_query.maintenance import Maintenance
from rag_query.ports import DocumentWriter


class Documents:
    """Stores and deletes the caller's documents unless maintenance is on."""

    def __init__(self, writer: DocumentWriter, maintenance: Maintenance) -> None:
        self._writer = writer
        self._maintenance = maintenance

    async def upsert(
        self, documents: Sequence[DocumentInput], identity: Identity
    ) -> list[UpsertResult]:
        """Store documents in the caller's tenant."""
        self._maintenance.check()
        return await self._writer.upsert(documents, identity)

    async def delete(self, document_ids: Sequence[str], identity: Identity) -> int:
        """Delete documents of the caller's tenant."""
        self._maintenance.check()
        return await self._writer.delete(document_ids, identity)
