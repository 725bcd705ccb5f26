"""Cached answers keep where each source is (page, section), in entries that a replica of the
previous version can still read, and read that version's entries too."""

from __future__ import annotations

import json

from rag_common.cache.local import LocalTTLCache
from rag_common.cache.tiered import TieredCache
from rag_common.domain import ScoredChunk
from rag_query.answer_cache import AnswerCache
from rag_query.models import Answer, GeneratedText, Timings

# The fields a source had in the previous release, all its replicas read.
PREVIOUS_SOURCE_FIELDS = {
    "document_id",
    "chunk_index",
    "score",
    "text",
    "title",
    "source",
    "metadata",
}
LIMITS = ScoredChunk(
    "manuals/ember-40.pdf", 4, 0.8, "Never fire above 1300 degrees.", page=3, section="3.2 Limits"
)


def answer(*sources: ScoredChunk) -> Answer:
    return Answer("Below 1300 degrees [1].", list(sources), GeneratedText("...", "x"), Timings())


async def test_a_cached_answer_keeps_the_page_and_section_of_each_source():
    cache = AnswerCache(TieredCache(LocalTTLCache(10, 60.0)))
    await cache.put("k", answer(LIMITS, ScoredChunk("notes.md", 0, 0.5, "plain")))
    cached = await cache.get("k")
    assert [(s.page, s.section) for s in cached.sources] == [(3, "3.2 Limits"), (0, "")]


async def test_its_sources_carry_only_what_the_previous_version_reads():
    local = LocalTTLCache(10, 60.0)
    await AnswerCache(TieredCache(local)).put("k", answer(LIMITS))
    stored = json.loads(local.get("k"))
    assert all(set(source) == PREVIOUS_SOURCE_FIELDS for source in stored["sources"])
    ScoredChunk(**stored["sources"][0])  # as a previous replica builds it


async def test_an_entry_of_the_previous_version_is_read_without_places():
    local = LocalTTLCache(10, 60.0)
    previous = {
        "text": "Below 1300 degrees [1].",
        "sources": [{f: getattr(LIMITS, f) for f in PREVIOUS_SOURCE_FIELDS}],
        "generated": {"text": "...", "provider": "x", "cited_sources": [1]},
    }
    local.put("k", json.dumps(previous).encode())
    cached = await AnswerCache(TieredCache(local)).get("k")
    assert (cached.sources[0].document_id, cached.sources[0].page) == (LIMITS.document_id, 0)
