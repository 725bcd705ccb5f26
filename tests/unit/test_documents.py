"""The document core: the time an ingest gets."""

from __future__ import annotations

from rag_common import context
from rag_common.domain import DocumentInput, UpsertResult
from rag_common.security.identity import Identity
from rag_query.documents import Documents
from rag_query.maintenance import Maintenance

ACME = Identity("writer", "acme", frozenset({"writer"}))


async def test_an_ingest_without_a_deadline_gets_the_time_its_size_needs():
    class Writer:
        """Records the time each upsert was given."""

        def __init__(self) -> None:
            self.granted: list[float] = []

        async def upsert(self, documents, identity):
            self.granted.append(context.remaining_seconds(float("inf")))
            for document in documents:
                yield UpsertResult(document.id, 1)

        async def delete(self, document_ids, identity):
            return 0

    writer = Writer()
    documents = Documents(writer, Maintenance(), chars_per_s=10_000, base_timeout_s=30)
    big = [DocumentInput("book", "x" * 1_000_000)]
    await documents.upsert(big, ACME)
    assert 129 < writer.granted[0] <= 130  # 30 s, plus 100 s for a million characters
    with context.tighter_deadline(5.0):  # the caller's own deadline is kept as it is
        await documents.upsert(big, ACME)
    assert writer.granted[1] <= 5.0
