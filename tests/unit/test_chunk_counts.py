"""What the sole writer remembers of documents' chunk counts, and when it asks the store."""

from __future__ import annotations

import asyncio

from rag_retrieval.chunk_counts import ChunkCountMemory
from rag_retrieval.models import ChunkRecord


def chunk(document: str, index: int, count: int, tenant: str = "acme") -> ChunkRecord:
    return ChunkRecord(
        id=f"{tenant}/{document}/{index}",
        tenant=tenant,
        document_id=document,
        chunk_index=index,
        text="text",
        vector=[1.0],
        chunk_count=count,
    )


class Store:
    """Answers chunk-count reads from a dict, counting them; can hold a read open."""

    def __init__(self, counts: dict[str, int | None]) -> None:
        self.counts = counts
        self.reads: list[list[str]] = []
        self.hold: asyncio.Event | None = None

    async def read(self, document_ids: list[str]) -> dict[str, int | None]:
        self.reads.append(document_ids)
        found = {d: self.counts[d] for d in document_ids if d in self.counts}
        if self.hold is not None:
            await self.hold.wait()
        return found


async def test_written_counts_are_answered_without_reading_the_store():
    memory, store = ChunkCountMemory(), Store({})
    memory.written([chunk("a", 0, 3), chunk("a", 1, 3), chunk("b", 0, 1)])

    assert await memory.counts("acme", ["a", "b"], store.read) == {"a": 3, "b": 1}
    assert store.reads == []
    # Another tenant's document of the same id is not known.
    assert await memory.counts("globex", ["a"], store.read) == {}
    assert store.reads == [["a"]]


async def test_read_counts_are_kept_and_deleted_documents_are_known_gone():
    memory, store = ChunkCountMemory(), Store({"old": None, "kept": 4})
    assert await memory.counts("acme", ["old", "kept", "gone"], store.read) == {
        "old": None,  # chunk 0 without a recorded count
        "kept": 4,
    }
    assert await memory.counts("acme", ["old", "kept", "gone"], store.read) == {
        "old": None,
        "kept": 4,
    }
    memory.deleted("acme", "kept")
    assert await memory.counts("acme", ["kept"], store.read) == {}
    assert store.reads == [["old", "kept", "gone"]]


async def test_a_read_that_overlapped_a_write_is_used_once_and_not_kept():
    memory, store = ChunkCountMemory(), Store({"a": 8})
    store.hold = asyncio.Event()
    reading = asyncio.ensure_future(memory.counts("acme", ["a"], store.read))
    await asyncio.sleep(0)
    memory.written([chunk("a", 0, 2)])  # a re-ingest finished while the store was read
    store.hold.set()

    assert await reading == {"a": 8}  # what the store said when it was read
    assert await memory.counts("acme", ["a"], store.read) == {"a": 2}
    assert store.reads == [["a"]]


async def test_forgetting_and_clearing_send_reads_back_to_the_store():
    memory, store = ChunkCountMemory(max_entries=2), Store({"a": 1, "b": 1, "c": 1})
    memory.written([chunk("a", 0, 5), chunk("b", 0, 5)])
    memory.forget("acme", "a")
    assert await memory.counts("acme", ["a", "b"], store.read) == {"a": 1, "b": 5}
    memory.clear()
    assert await memory.counts("acme", ["b"], store.read) == {"b": 1}
    assert store.reads == [["a"], ["b"]]


async def test_at_most_max_entries_are_kept_least_recently_used_first_out():
    memory, store = ChunkCountMemory(max_entries=2), Store({"a": 1})
    memory.written([chunk("a", 0, 5), chunk("b", 0, 5)])
    assert await memory.counts("acme", ["a"], store.read) == {"a": 5}  # a is used again
    memory.written([chunk("c", 0, 7)])  # b, the least recently used, goes
    assert await memory.counts("acme", ["a", "b", "c"], store.read) == {"a": 5, "c": 7}
    assert store.reads == [["b"]]
