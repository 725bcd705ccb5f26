"""gRPC edge of the retrieval service: converts and delegates to the Retriever."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from rag.v1 import retrieval_service_pb2 as pb
from rag.v1 import retrieval_service_pb2_grpc as pb_grpc
from rag_common import status
from rag_common.breaker import counts_as_failure
from rag_common.context import current_identity
from rag_common.convert import (
    conditions_from_pb,
    document_info_to_pb,
    document_page_to_pb,
    documents_from_pb,
)
from rag_common.errors import InvalidArgument, RagError
from rag_common.security.identity import ADMIN, OPERATOR, READER, WRITER
from rag_common.server.host import Servicer
from rag_retrieval import convert
from rag_retrieval.backups import Backups
from rag_retrieval.retriever import Retriever

MAX_BATCH_SEARCHES = 32


class RetrievalServicer(pb_grpc.RetrievalServiceServicer):
    """rag.v1.RetrievalService; the tenant always comes from the forwarded identity."""

    def __init__(self, retriever: Retriever, backups: Backups) -> None:
        self._retriever = retriever
        self._backups = backups

    async def Retrieve(self, request: pb.RetrieveRequest, context) -> pb.RetrieveResponse:
        """Search the caller's tenant."""
        result = await self._retriever.retrieve(convert.query_from_pb(request), current_identity())
        return convert.retrieve_response_to_pb(result)

    async def RetrieveBatch(
        self, request: pb.RetrieveBatchRequest, context
    ) -> pb.RetrieveBatchResponse:
        """Several searches of the caller's tenant at once, each with its own outcome."""
        if not 1 <= len(request.searches) <= MAX_BATCH_SEARCHES:
            raise InvalidArgument(
                "searches",
                f"must hold 1 to {MAX_BATCH_SEARCHES} searches, not {len(request.searches)}",
            )
        identity = current_identity()

        async def search(one: pb.RetrieveRequest) -> pb.RetrieveResponse | RagError:
            try:
                result = await self._retriever.retrieve(convert.query_from_pb(one), identity)
            except RagError as exc:  # this search's own error, never the others'
                return exc
            return convert.retrieve_response_to_pb(result)

        results = await asyncio.gather(*(search(one) for one in request.searches))
        failures = [r for r in results if isinstance(r, RagError) and counts_as_failure(r)]
        if len(failures) == len(results):
            # Every search failed as this service does (its store down, say): the call
            # fails, so the caller's breaker sees what a single Retrieve would show it.
            raise failures[0]
        return pb.RetrieveBatchResponse(
            outcomes=[
                pb.RetrieveOutcome(error=status.to_bytes(r))
                if isinstance(r, RagError)
                else pb.RetrieveOutcome(response=r)
                for r in results
            ]
        )

    async def UpsertDocuments(
        self, request: pb.UpsertDocumentsRequest, context
    ) -> AsyncIterator[pb.UpsertDocumentsResponse]:
        """Chunk, embed and store documents; acknowledge each once it is stored."""
        documents = documents_from_pb(request.documents)
        async for result in self._retriever.upsert(documents, current_identity()):
            yield convert.upsert_response_to_pb([result])

    async def CreateBackup(
        self, request: pb.CreateBackupRequest, context
    ) -> AsyncIterator[pb.CreateBackupResponse]:
        """Stream an archive of the whole store."""
        async for piece in self._backups.create():
            yield pb.CreateBackupResponse(data=piece)

    async def RestoreBackup(
        self, request_iterator: AsyncIterator[pb.RestoreBackupRequest], context
    ) -> pb.RestoreBackupResponse:
        """Replace the whole store with the archive streamed in."""
        chunks = await self._backups.restore(r.data async for r in request_iterator)
        return pb.RestoreBackupResponse(chunks=chunks)

    async def DeleteDocuments(
        self, request: pb.RetrievalServiceDeleteDocumentsRequest, context
    ) -> pb.RetrievalServiceDeleteDocumentsResponse:
        """Delete documents and their chunks."""
        deleted = await self._retriever.delete(list(request.document_ids), current_identity())
        return pb.RetrievalServiceDeleteDocumentsResponse(deleted_chunks=deleted)

    async def ListDocuments(
        self, request: pb.RetrievalServiceListDocumentsRequest, context
    ) -> pb.RetrievalServiceListDocumentsResponse:
        """The caller's tenant's documents, a page at a time."""
        asked = request.request
        page = await self._retriever.list_documents(
            current_identity(),
            page_size=asked.page_size,
            page_token=asked.page_token,
            conditions=conditions_from_pb(asked.filters),
        )
        return pb.RetrievalServiceListDocumentsResponse(response=document_page_to_pb(page))

    async def GetDocument(
        self, request: pb.RetrievalServiceGetDocumentRequest, context
    ) -> pb.RetrievalServiceGetDocumentResponse:
        """One document of the caller's tenant."""
        info = await self._retriever.get_document(request.document_id, current_identity())
        return pb.RetrievalServiceGetDocumentResponse(document=document_info_to_pb(info))

    async def Reindex(self, request: pb.ReindexRequest, context) -> pb.ReindexResponse:
        """Rebuild every stored vector with the embedding service's model now."""
        chunks, space = await self._retriever.reindex()
        return pb.ReindexResponse(chunks=chunks, model=space.model, dimension=space.dimension)

    async def EraseTenant(self, request: pb.EraseTenantRequest, context) -> pb.EraseTenantResponse:
        """Delete every chunk of the caller's tenant."""
        documents, chunks = await self._retriever.erase_tenant(current_identity())
        return pb.EraseTenantResponse(deleted_documents=documents, deleted_chunks=chunks)


def servicers(retriever: Retriever, backups: Backups) -> list[Servicer]:
    """The servicers a retrieval process hosts."""
    return [
        Servicer(
            RetrievalServicer(retriever, backups),
            pb_grpc.add_RetrievalServiceServicer_to_server,
            pb.DESCRIPTOR.services_by_name["RetrievalService"].full_name,
            # On whose behalf each call must be made: a token minted for a reader's
            # question writes nothing, and whole-store archives are for operators alone.
            required_roles={
                "Retrieve": READER,
                "RetrieveBatch": READER,
                "UpsertDocuments": WRITER,
                "DeleteDocuments": WRITER,
                "CreateBackup": OPERATOR,
                "RestoreBackup": OPERATOR,
                "ListDocuments": READER,
                "GetDocument": READER,
                "EraseTenant": ADMIN,  # a tenant admin's, for that tenant alone
                "Reindex": OPERATOR,  # every tenant's vectors
            },
        )
    ]
