"""RetrieveBatch at the servicer: each search ends in its own outcome, and a batch in which
every search failed as the service does fails as a whole, as one Retrieve would, so the
caller's breaker sees it."""

from __future__ import annotations

import pytest

from rag.v1 import retrieval_service_pb2 as pb
from rag_common import context, status
from rag_common.domain import ScoredChunk
from rag_common.errors import InvalidArgument, Unavailable
from rag_common.security.identity import Identity
from rag_retrieval.models import RetrieveResult
from rag_retrieval.servicer import RetrievalServicer

ACME = Identity("app", "acme", frozenset({"reader"}))


class FakeRetriever:
    """Finds one chunk per question; "bad" is invalid; with `down`, its store is down."""

    def __init__(self, down: bool = False) -> None:
        self.down = down

    async def retrieve(self, query, identity):
        if query.text == "bad":
            raise InvalidArgument("top_k", "at most 100")
        if self.down:
            raise Unavailable("the vector store is down", reason="STORE_UNAVAILABLE")
        chunk = ScoredChunk(f"{identity.tenant}/{query.text}", 0, 1.0, "x")
        return RetrieveResult([chunk], embed_ms=1.0, search_ms=1.0)


def batch(*questions: str) -> pb.RetrieveBatchRequest:
    return pb.RetrieveBatchRequest(searches=[pb.RetrieveRequest(query=q) for q in questions])


async def test_each_search_ends_in_its_own_outcome():
    context.set_identity(ACME)
    servicer = RetrievalServicer(FakeRetriever(), backups=None)
    reply = await servicer.RetrieveBatch(batch("tides", "bad", "kelp"), None)
    tides, bad, kelp = reply.outcomes
    assert [c.document_id for c in tides.response.chunks] == ["acme/tides"]
    assert [c.document_id for c in kelp.response.chunks] == ["acme/kelp"]
    error = status.from_bytes(bad.error, dependency="retrieval")
    assert isinstance(error, InvalidArgument) and error.field == "top_k"


async def test_a_batch_whose_every_search_failed_as_the_service_fails_as_a_whole():
    context.set_identity(ACME)
    servicer = RetrievalServicer(FakeRetriever(down=True), backups=None)
    with pytest.raises(Unavailable):
        await servicer.RetrieveBatch(batch("tides", "kelp"), None)
    # Callers' own mistakes are theirs: a batch of them is answered, each with its error.
    reply = await servicer.RetrieveBatch(batch("bad", "bad"), None)
    assert all(o.HasField("error") for o in reply.outcomes)
