"""One contract for every VectorStore adapter, run against the real Qdrant engines.

qdrant-edge is Qdrant's engine in-process; qdrant-client's local mode speaks the same API
as a Qdrant server. Both must behave the same for everything the retriever relies on.
"""

from __future__ import annotations

import asyncio
import math
import os
import threading

import pytest

from rag_common.domain import Condition, Operator
from rag_retrieval.adapters.edge_store import EdgeStore
from rag_retrieval.adapters.qdrant_store import QdrantStore
from rag_retrieval.lexical import Bm25Terms
from rag_retrieval.models import ChunkRecord
from rag_retrieval.retriever import chunk_id
from rag_retrieval.store import LexicalQuery

DIM = 8


def unit(*components: float) -> list[float]:
    vector = list(components) + [0.0] * (DIM - len(components))
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector]


BM25 = Bm25Terms(chunk_size=800)


def record(
    tenant: str, document: str, index: int, vector: list[float], text: str = "", **metadata: str
):
    text = text or f"{document} chunk {index}"
    return ChunkRecord(
        id=chunk_id(tenant, document, index),
        tenant=tenant,
        document_id=document,
        chunk_index=index,
        text=text,
        vector=vector,
        chunk_count=index + 1,
        terms=BM25.document(text),
        title=document.title(),
        source=f"/docs/{document}.md",
        metadata=metadata,
    )


def make_store(kind: str, path) -> object:
    if kind == "edge":
        return EdgeStore(path / "edge", DIM)
    return QdrantStore("contract", DIM, path=str(path / "qdrant"))


@pytest.fixture(params=["edge", "qdrant-client"])
async def store(request, tmp_path):
    store = make_store(request.param, tmp_path)
    await store.open()
    await store.upsert(
        [
            record("acme", "north", 0, unit(1, 0), lang="en"),
            record("acme", "north", 1, unit(1, 0.2), lang="en"),
            record("acme", "east", 0, unit(0, 1), lang="de"),
            record("acme", "plain", 0, unit(0.5, 0.5)),
            record("globex", "north", 0, unit(1, 0), lang="en"),
        ]
    )
    store.kind, store.path = request.param, tmp_path
    yield store
    await store.close()


async def search(
    store, tenant="acme", vector=None, conditions=(), top_k=10, threshold=None, lexical=None
):
    return await store.search(
        tenant,
        vector or unit(1, 0),
        conditions=conditions,
        top_k=top_k,
        score_threshold=threshold,
        lexical=lexical,
    )


async def test_search_orders_by_cosine_similarity_and_returns_the_payload(store):
    hits = await search(store)
    assert [(h.document_id, h.chunk_index) for h in hits][:2] == [("north", 0), ("north", 1)]
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert hits[0].text == "north chunk 0"
    assert hits[0].title == "North" and hits[0].source == "/docs/north.md"
    assert dict(hits[0].metadata) == {"lang": "en"}


async def test_search_stays_inside_the_tenant(store):
    assert {h.document_id for h in await search(store, tenant="globex")} == {"north"}
    assert await search(store, tenant="nobody") == []


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (Condition("lang", Operator.EQUALS, ("de",)), {"east"}),
        (Condition("lang", Operator.NOT_EQUALS, ("en",)), {"east", "plain"}),
        (Condition("lang", Operator.IN, ("en", "de")), {"north", "east"}),
        (Condition("lang", Operator.NOT_IN, ("en", "de")), {"plain"}),
    ],
)
async def test_metadata_conditions(store, condition, expected):
    assert {h.document_id for h in await search(store, conditions=[condition])} == expected


async def test_top_k_and_score_threshold(store):
    assert len(await search(store, top_k=2)) == 2
    close = await search(store, threshold=0.9)
    assert {(h.document_id, h.chunk_index) for h in close} == {("north", 0), ("north", 1)}


async def test_upsert_with_the_same_id_replaces(store):
    await store.upsert([record("acme", "east", 0, unit(1, 0), lang="fr")])
    assert await store.count("acme", "east") == 1
    hits = await search(store, conditions=[Condition("lang", Operator.EQUALS, ("fr",))])
    assert [h.document_id for h in hits] == ["east"]


async def test_delete_from_a_chunk_index_on(store):
    await store.delete("acme", "north", from_chunk=1)
    assert await store.count("acme", "north") == 1
    await store.delete("acme", "north")
    assert await store.count("acme", "north") == 0
    assert await store.count("globex", "north") == 1
    assert await store.count("acme") == 2


async def test_data_survives_close_and_reopen(store):
    await store.close()
    reopened = make_store(store.kind, store.path)
    await reopened.open()
    try:
        assert await reopened.count("acme") == 4
        assert (await search(reopened))[0].document_id == "north"
    finally:
        await reopened.close()


def lexical(question: str, weight: float = 2.0) -> LexicalQuery:
    return LexicalQuery(
        BM25.query(question), candidates=10, dense_weight=1.0, lexical_weight=weight, rrf_k=60
    )


async def test_hybrid_search_fuses_the_lexical_index_in_under_tenant_and_filters(store):
    # Far from the query vector, but the only chunk naming the valve.
    await store.upsert(
        [
            record("acme", "valve", 0, unit(0, 0, 1), "The zorblax valve seals it.", lang="en"),
            record("globex", "valve", 0, unit(0, 0, 1), "zorblax zorblax zorblax", lang="en"),
        ]
    )
    dense = await search(store, top_k=3)
    assert "valve" not in {h.document_id for h in dense}
    hits = await search(store, top_k=3, lexical=lexical("where is the zorblax valve"))
    assert hits[0].document_id == "valve" and "zorblax valve" in hits[0].text
    assert hits[0].score > 1.5 / 61  # more than the dense ranking alone can give: weight 2
    globex = await search(store, tenant="globex", lexical=lexical("zorblax"))
    assert [h.text for h in globex if h.document_id == "valve"] == ["zorblax zorblax zorblax"]
    german = Condition("lang", Operator.EQUALS, ("de",))
    filtered = await search(store, conditions=[german], lexical=lexical("zorblax"))
    assert {h.document_id for h in filtered} == {"east"}
    # A threshold on similarity holds for what BM25 finds, too.
    close = await search(store, threshold=0.9, lexical=lexical("zorblax"))
    assert {h.document_id for h in close} == {"north"}


async def test_hybrid_search_without_terms_is_the_dense_search(store):
    assert await search(store, lexical=lexical("what is it")) == await search(store)


async def test_edge_searches_run_beside_writes_and_wait_for_a_restore(tmp_path):
    store = EdgeStore(tmp_path / "edge", DIM)
    await store.open()
    await store.upsert([record("acme", "north", 0, unit(1, 0))])
    archive, pipe = tmp_path / "backup.tar.gz", tmp_path / "pipe"
    await store.archive(archive)
    os.mkfifo(pipe)
    drained = asyncio.ensure_future(asyncio.sleep(0))
    try:
        # A backup into a pipe nobody reads yet holds the writer thread: searches made
        # meanwhile still come back, and a write waits its turn behind the backup.
        backing_up = asyncio.ensure_future(store.archive(pipe))
        writing = asyncio.ensure_future(store.upsert([record("acme", "south", 0, unit(0, 1))]))
        found = await asyncio.wait_for(asyncio.gather(*(search(store) for _ in range(8))), 10)
        assert all([h.document_id for h in hits] == ["north"] for hits in found)
        assert not backing_up.done() and not writing.done()
        drained = asyncio.ensure_future(asyncio.to_thread(pipe.read_bytes))
        await asyncio.gather(backing_up, writing)
        assert await drained and len(await search(store)) == 2
        # A restore swaps the shard: searches in flight finish on the old one, searches
        # made meanwhile run on the new one, and none fails.
        searches = [asyncio.ensure_future(search(store)) for _ in range(20)]
        restoring = asyncio.ensure_future(store.restore_archive(archive))
        searches += [asyncio.ensure_future(search(store)) for _ in range(20)]
        assert await restoring == 1
        results = await asyncio.gather(*searches)
        assert all(len(hits) == 2 for hits in results[:20])
        assert all([h.document_id for h in hits] == ["north"] for hits in results[20:])
    finally:
        if drained.done() and not backing_up.done():  # failed midway: free the writer
            drained = asyncio.ensure_future(asyncio.to_thread(pipe.read_bytes))
        await store.close()
        await drained


async def test_edge_restore_waits_for_a_read_whose_caller_gave_up(tmp_path):
    store = EdgeStore(tmp_path / "edge", DIM)
    await store.open()
    await store.upsert([record("acme", "north", 0, unit(1, 0))])
    archive = tmp_path / "backup.tar.gz"
    await store.archive(archive)
    held = threading.Event()
    try:
        # A read still running on its thread after its caller was cancelled (a deadline).
        reading = asyncio.ensure_future(store._read(held.wait))
        await asyncio.sleep(0.05)
        reading.cancel()
        restoring = asyncio.ensure_future(store.restore_archive(archive))
        done, _ = await asyncio.wait([restoring], timeout=2.0)
        assert not done  # the shard is not swapped under the running read
        held.set()
        assert await restoring == 1
        with pytest.raises(asyncio.CancelledError):
            await reading
    finally:
        held.set()
        await store.close()
