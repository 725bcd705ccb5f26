"""RetrievalService over gRPC, as the query core's ContextRetriever and DocumentWriter."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from rag.v1 import document_service_pb2
from rag.v1 import retrieval_service_pb2 as pb
from rag.v1 import retrieval_service_pb2_grpc as pb_grpc
from rag_common import status
from rag_common.client.channel import ServiceClient
from rag_common.convert import (
    conditions_to_pb,
    document_info_from_pb,
    document_page_from_pb,
    documents_to_pb,
    search_mode_to_pb,
    source_from_pb,
)
from rag_common.domain import (
    DocumentInfo,
    DocumentInput,
    DocumentListing,
    DocumentPage,
    UpsertResult,
)
from rag_common.security.identity import Identity
from rag_query.models import QueryOptions, RetrievedContext, Search


class RetrievalClient(ServiceClient):
    """Calls RetrievalService with the caller's identity forwarded."""

    dependency = "retrieval"
    service = "rag.v1.RetrievalService"
    stub = pb_grpc.RetrievalServiceStub

    async def retrieve(
        self, question: str, vector: Sequence[float], options: QueryOptions, identity: Identity
    ) -> RetrievedContext:
        """Chunks nearest to `vector` in the caller's tenant."""
        request = _retrieve_request(question, vector, options)
        response = await self._unary("Retrieve", request, identity, hedge=True)
        return _context(response)

    async def retrieve_batch(
        self, searches: Sequence[Search], identity: Identity
    ) -> list[RetrievedContext | Exception]:
        """Several searches in the caller's tenant in one call: each one's chunks, or the
        error it alone ended with."""
        request = pb.RetrieveBatchRequest(
            searches=[_retrieve_request(s.question, s.vector, s.options) for s in searches]
        )
        response = await self._unary("RetrieveBatch", request, identity, hedge=True)
        return [
            _context(outcome.response)
            if outcome.HasField("response")
            else status.from_bytes(outcome.error, dependency=self.dependency)
            for outcome in response.outcomes
        ]

    async def upsert(
        self, documents: Sequence[DocumentInput], identity: Identity
    ) -> AsyncIterator[UpsertResult]:
        """Store documents in the caller's tenant; yields each one once it is stored."""
        request = pb.UpsertDocumentsRequest(documents=documents_to_pb(documents))
        async for response in self._stream("UpsertDocuments", request, identity):
            for result in response.results:
                yield UpsertResult(result.document_id, result.chunks)

    async def delete(self, document_ids: Sequence[str], identity: Identity) -> int:
        """Delete documents of the caller's tenant."""
        request = pb.RetrievalServiceDeleteDocumentsRequest(document_ids=document_ids)
        response = await self._unary("DeleteDocuments", request, identity)
        return response.deleted_chunks

    async def list_documents(self, listing: DocumentListing, identity: Identity) -> DocumentPage:
        """One page of the caller's tenant's documents."""
        request = document_service_pb2.ListDocumentsRequest(
            page_size=listing.page_size,
            page_token=listing.page_token,
            filters=conditions_to_pb(listing.conditions),
        )
        wrapped = pb.RetrievalServiceListDocumentsRequest(request=request)
        response = await self._unary("ListDocuments", wrapped, identity, hedge=True)
        return document_page_from_pb(response.response)

    async def get_document(self, document_id: str, identity: Identity) -> DocumentInfo:
        """One document of the caller's tenant."""
        request = pb.RetrievalServiceGetDocumentRequest(document_id=document_id)
        response = await self._unary("GetDocument", request, identity, hedge=True)
        return document_info_from_pb(response.document)

    async def erase_tenant(self, identity: Identity) -> tuple[int, int]:
        """Delete every chunk of the caller's tenant: (documents, chunks) deleted."""
        response = await self._unary("EraseTenant", pb.EraseTenantRequest(), identity)
        return response.deleted_documents, response.deleted_chunks


def _retrieve_request(
    question: str, vector: Sequence[float], options: QueryOptions
) -> pb.RetrieveRequest:
    request = pb.RetrieveRequest(
        query=question,
        query_vector=vector,
        top_k=options.top_k,
        filters=conditions_to_pb(options.conditions),
        search_mode=search_mode_to_pb(options.search_mode),
    )
    if options.score_threshold is not None:
        request.score_threshold = options.score_threshold
    if options.rerank is not None:
        request.rerank = options.rerank
    return request


def _context(response: pb.RetrieveResponse) -> RetrievedContext:
    return RetrievedContext([source_from_pb(c) for c in response.chunks], tuple(response.degraded))
