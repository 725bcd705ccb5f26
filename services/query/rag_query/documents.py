"""The document core: the public ingest and delete calls, forwarded to retrieval.

Every public write passes here, so this is where a tenant's corpus version moves and its
cached answers stop being served.
"""

from __future__ import annotations

from collections.abc import Sequence

from rag_common.corpus import CorpusVersions
from rag_common.domain import DocumentInput, UpsertResult
from rag_common.identity import Identity
from rag_query.maintenance import Maintenance
from rag_query.ports import DocumentWriter


class Documents:
    """Stores and deletes the caller's documents unless maintenance is on."""

    def __init__(
        self,
        writer: DocumentWriter,
        maintenance: Maintenance,
        versions: CorpusVersions | None = None,
    ) -> None:
        self._writer = writer
        self._maintenance = maintenance
        self._versions = versions

    async def upsert(
        self, documents: Sequence[DocumentInput], identity: Identity
    ) -> list[UpsertResult]:
        """Store documents in the caller's tenant."""
        self._maintenance.check()
        try:
            return await self._writer.upsert(documents, identity)
        finally:
            # Even a failed call may have changed something: move the version either way.
            await self._corpus_changed(identity)

    async def delete(self, document_ids: Sequence[str], identity: Identity) -> int:
        """Delete documents of the caller's tenant."""
        self._maintenance.check()
        try:
            return await self._writer.delete(document_ids, identity)
        finally:
            await self._corpus_changed(identity)

    async def _corpus_changed(self, identity: Identity) -> None:
        if self._versions is not None:
            await self._versions.bump(identity.tenant)
