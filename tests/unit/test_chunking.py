from __future__ import annotations

import itertools

import pytest

from rag_retrieval.chunking import chunk_document, chunk_text
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


MARKDOWN = (
    "# Billing guide\n\nIntro text about invoices and what they contain.\n\n## Refunds\n\n"
    + " ".join(f"Step {i} of the process takes a working day to complete." for i in range(30))
    + """

```python
# not a heading: a comment inside code
print("hello")
```

### Partial refunds

Only the unused months come back.

## Taxes

VAT is added per country.
"""
)


def test_a_chunk_deep_in_a_markdown_section_carries_its_heading_path():
    chunks = chunk_document(MARKDOWN, size=300, overlap=40)
    deep = [c for c in chunks if "Step 20 " in c.text]
    assert deep and all(c.headings == ("Billing guide", "Refunds") for c in deep)
    # The chunk that starts inside "Partial refunds" is under it, one level below Refunds;
    # a "#" line inside a code fence never counts as a heading.
    last = chunks[-1]
    assert last.text.startswith("unused months come back.")
    assert last.headings == ("Billing guide", "Refunds", "Partial refunds")


def section(name: str) -> str:
    return " ".join(f"{name} note {i} says to read the changelog first." for i in range(30))


RST = f"""=========
Reference
=========

Installation
============

{section("Install")}

Upgrading
---------

{section("Upgrade")}

Rolling back
~~~~~~~~~~~~

{section("Rollback")}

Configuration
=============

{section("Config")}
"""


def test_rst_headings_nest_by_the_order_their_adornments_first_appear():
    def under(note: str) -> tuple[str, ...]:
        # Note 20 of a section is far past its heading: the chunk holding it starts inside.
        return next(c.headings for c in chunk_document(RST, 300, 40) if note in c.text)

    assert under("Install note 20") == ("Reference", "Installation")
    assert under("Upgrade note 20") == ("Reference", "Installation", "Upgrading")
    assert under("Rollback note 20") == ("Reference", "Installation", "Upgrading", "Rolling back")
    # Back to the "=" underline: a sibling of Installation, the deeper sections closed.
    assert under("Config note 20") == ("Reference", "Configuration")


def test_indexed_text_leads_with_title_and_headings_but_stored_text_is_untouched():
    chunk = chunk_document(MARKDOWN, size=300, overlap=40)[3]
    indexed = chunk.indexed_text("Acme handbook")
    assert indexed.startswith("Acme handbook > Billing guide > Refunds\n")
    assert indexed.endswith(chunk.text)
    assert chunk_document("plain words only", 300, 40)[0].indexed_text("") == "plain words only"


def test_no_chunk_runs_onto_the_next_page():
    """A page shorter than a chunk still ends its chunk: the cited page holds all of it."""
    pages = [
        "Short first page about the intake tower.",
        " ".join(f"Filters are washed at 2.4 metres of head loss, note {n}." for n in range(30)),
        "The last page: the generator has fuel for 48 hours.",
    ]
    chunks = chunk_document("\f".join(pages), size=800, overlap=120)
    for chunk in chunks:
        assert chunk.text in pages[chunk.page - 1], chunk
    assert [c.page for c in chunks] == sorted(c.page for c in chunks)
    assert {c.page for c in chunks} == {1, 2, 3}
