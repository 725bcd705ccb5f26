from __future__ import annotations

import itertools

import pytest

from rag_retrieval.chunking import chunk_text
from rag_retrieval.retriever import chunk_id

TEXT = "\n\n".join(
    f"Paragraph {p}. " + " ".join(f"Sentence {p}.{s} has several words in it." for s in range(6))
    for p in range(8)
)


def test_chunks_respect_the_size_limit_and_cover_the_text():
    chunks = chunk_text(TEXT, size=300, overlap=50)
    assert all(len(c) <= 300 for c in chunks)
    for p in range(8):
        for s in range(6):
            assert any(f"Sentence {p}.{s} " in c for c in chunks)


def test_chunks_end_on_sentence_or_paragraph_boundaries():
    chunks = chunk_text(TEXT, size=300, overlap=50)
    assert all(c.endswith(".") for c in chunks)


def test_consecutive_chunks_overlap_without_starting_mid_word():
    chunks = chunk_text(TEXT, size=300, overlap=60)
    for before, after in itertools.pairwise(chunks):
        head = after[:20]
        assert head.split()[0] in before.split()
    assert all(not c[0].isspace() for c in chunks)


def test_chunking_is_deterministic_and_short_text_is_one_chunk():
    assert chunk_text(TEXT, 300, 50) == chunk_text(TEXT, 300, 50)
    assert chunk_text("  Just one line.  ", 300, 50) == ["Just one line."]


def test_text_without_spaces_is_still_cut():
    chunks = chunk_text("x" * 1000, size=300, overlap=0)
    assert [len(c) for c in chunks] == [300, 300, 300, 100]


def test_overlap_must_be_smaller_than_size():
    with pytest.raises(ValueError):
        chunk_text("text", size=100, overlap=100)


def test_chunk_ids_are_stable_and_differ_by_tenant_document_and_index():
    assert chunk_id("acme", "doc", 0) == chunk_id("acme", "doc", 0)
    ids = {chunk_id(t, d, i) for t in ("acme", "globex") for d in ("a", "b") for i in range(3)}
    assert len(ids) == 12
