"""gRPC edge of the public services: converts and delegates to the query engine."""

from __future__ import annotations

from collections.abc import AsyncIterator

from rag.v1 import admin_service_pb2 as admin_pb
from rag.v1 import admin_service_pb2_grpc as admin_grpc
from rag.v1 import document_service_pb2 as doc_pb
from rag.v1 import document_service_pb2_grpc as doc_grpc
from rag.v1 import query_service_pb2 as pb
from rag.v1 import query_service_pb2_grpc as pb_grpc
from rag_common.context import current_identity
from rag_common.convert import (
    conditions_from_pb,
    document_info_to_pb,
    document_page_to_pb,
    documents_from_pb,
)
from rag_common.domain import DocumentListing
from rag_common.server.host import Servicer
from rag_query import convert
from rag_query.documents import Documents
from rag_query.engine import QueryEngine, SourcesFound
from rag_query.maintenance import Maintenance


class QueryServicer(pb_grpc.QueryServiceServicer):
    """rag.v1.QueryService."""

    def __init__(self, engine: QueryEngine, *, snippet_chars: int) -> None:
        self._engine = engine
        self._snippet_chars = snippet_chars

    async def Query(self, request: pb.QueryRequest, context) -> pb.QueryResponse:
        """Answer a question."""
        answer = await self._engine.answer(convert.question_from_pb(request), current_identity())
        return convert.answer_to_pb(answer, snippet_chars=self._snippet_chars)

    async def StreamQuery(
        self, request: pb.StreamQueryRequest, context
    ) -> AsyncIterator[pb.StreamQueryResponse]:
        """Answer a question as a stream."""
        question = convert.question_from_pb(request)
        async for item in self._engine.stream(question, current_identity()):
            if isinstance(item, SourcesFound):
                sources = convert.sources_to_pb(item.sources, snippet_chars=self._snippet_chars)
                yield pb.StreamQueryResponse(sources=pb.QuerySources(sources=sources))
            elif isinstance(item, str):
                yield pb.StreamQueryResponse(delta=item)
            else:
                done = convert.answer_to_pb(item, snippet_chars=self._snippet_chars)
                yield pb.StreamQueryResponse(done=done)


class DocumentServicer(doc_grpc.DocumentServiceServicer):
    """rag.v1.DocumentService."""

    def __init__(self, documents: Documents) -> None:
        self._documents = documents

    async def IngestDocuments(
        self, request: doc_pb.IngestDocumentsRequest, context
    ) -> doc_pb.IngestDocumentsResponse:
        """Store documents in the caller's tenant."""
        documents = documents_from_pb(request.documents)
        results = await self._documents.upsert(documents, current_identity())
        return convert.ingest_response_to_pb(results)

    async def DeleteDocuments(
        self, request: doc_pb.DeleteDocumentsRequest, context
    ) -> doc_pb.DeleteDocumentsResponse:
        """Delete documents of the caller's tenant."""
        deleted = await self._documents.delete(list(request.document_ids), current_identity())
        return doc_pb.DeleteDocumentsResponse(deleted_chunks=deleted)

    async def ListDocuments(
        self, request: doc_pb.ListDocumentsRequest, context
    ) -> doc_pb.ListDocumentsResponse:
        """The caller's tenant's documents, newest first, a page at a time."""
        listing = DocumentListing(
            request.page_size, request.page_token, conditions_from_pb(request.filters)
        )
        page = await self._documents.list_documents(listing, current_identity())
        return document_page_to_pb(page)

    async def GetDocument(
        self, request: doc_pb.GetDocumentRequest, context
    ) -> doc_pb.GetDocumentResponse:
        """One document of the caller's tenant."""
        info = await self._documents.get_document(request.document_id, current_identity())
        return doc_pb.GetDocumentResponse(document=document_info_to_pb(info))


class AdminServicer(admin_grpc.AdminServiceServicer):
    """rag.v1.AdminService."""

    def __init__(self, maintenance: Maintenance, documents: Documents) -> None:
        self._maintenance = maintenance
        self._documents = documents

    async def SetMaintenance(
        self, request: admin_pb.SetMaintenanceRequest, context
    ) -> admin_pb.SetMaintenanceResponse:
        """Turn maintenance mode on or off."""
        await self._maintenance.set(request.enabled, request.message)
        return admin_pb.SetMaintenanceResponse(
            enabled=self._maintenance.enabled, message=self._maintenance.message
        )

    async def EraseTenantData(
        self, request: admin_pb.EraseTenantDataRequest, context
    ) -> admin_pb.EraseTenantDataResponse:
        """Erase everything the caller's tenant has stored."""
        documents, chunks = await self._documents.erase_tenant(
            request.confirm_tenant, current_identity()
        )
        return admin_pb.EraseTenantDataResponse(deleted_documents=documents, deleted_chunks=chunks)


def servicers(
    engine: QueryEngine, documents: Documents, maintenance: Maintenance, *, snippet_chars: int
) -> list[Servicer]:
    """The public servicers a query process hosts."""
    return [
        Servicer(
            QueryServicer(engine, snippet_chars=snippet_chars),
            pb_grpc.add_QueryServiceServicer_to_server,
            pb.DESCRIPTOR.services_by_name["QueryService"].full_name,
        ),
        Servicer(
            DocumentServicer(documents),
            doc_grpc.add_DocumentServiceServicer_to_server,
            doc_pb.DESCRIPTOR.services_by_name["DocumentService"].full_name,
        ),
        Servicer(
            AdminServicer(maintenance, documents),
            admin_grpc.add_AdminServiceServicer_to_server,
            admin_pb.DESCRIPTOR.services_by_name["AdminService"].full_name,
        ),
    ]
