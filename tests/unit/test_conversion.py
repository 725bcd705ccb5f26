"""Reading files as text (what runs inside the sandbox): headings become Markdown, pages are
separated, an empty page is reported, bombs and damage are refused by reason."""

from __future__ import annotations

import pytest

from rag_query.conversion import media
from rag_query.conversion.converters import PAGE_BREAK, convert
from rag_query.conversion.errors import ConversionError
from rag_retrieval.chunking import chunk_document
from tests.support import documents


def test_a_pdf_keeps_its_pages_and_its_bookmarks_become_headings():
    converted = convert(documents.kiln_manual_pdf(), media.PDF, 100_000)
    assert converted.pages == 4 and converted.pages_without_text == (4,)
    assert converted.title == "Ember 40 kiln manual"
    pages = converted.text.split(PAGE_BREAK)
    assert pages[2].strip().startswith("# 3.2 Limits\nNever fire above 1300")
    chunks = chunk_document(converted.text, 800, 120)
    limits = next(c for c in chunks if "1300 degrees" in c.text)
    assert (limits.page, limits.section) == (3, "3.2 Limits")
    assert all(PAGE_BREAK not in c.text for c in chunks)


def test_a_web_page_is_read_without_its_navigation_and_footer():
    converted = convert(documents.GREENHOUSE_HTML, media.HTML, 100_000)
    assert "## Heating" in converted.text and "## Watering" in converted.text
    assert "| Winter lettuce | September |" in converted.text
    for boilerplate in ("Shop seeds", "Free delivery", "Privacy", "Ten tomato varieties"):
        assert boilerplate not in converted.text


def test_a_word_file_keeps_its_headings_and_tables():
    converted = convert(documents.grant_docx(), media.DOCX, 100_000)
    assert converted.title == "Community orchard grant"
    assert "# Budget\n\nItem | Euros\nTrees | 2400\nTools | 650" in converted.text
    assert "## Reporting" in converted.text


@pytest.mark.parametrize(
    ("content", "media_type", "reason"),
    [
        (documents.encrypted_pdf(), media.PDF, "ENCRYPTED_DOCUMENT"),
        (documents.truncated_pdf(), media.PDF, "UNREADABLE_DOCUMENT"),
        (documents.zip_bomb_docx(), media.DOCX, "DOCUMENT_TOO_COMPLEX"),
        (b"PK\x03\x04 not really a zip", media.DOCX, "UNREADABLE_DOCUMENT"),
        (documents.kiln_manual_pdf(), media.PDF, "DOCUMENT_TOO_COMPLEX"),  # over max_chars
        (
            b"<html><body><script>start()</script><img src=a.png></body></html>",
            media.HTML,
            "NO_TEXT",
        ),
        (b"\xff\xfe not utf-8", media.TEXT, "UNSUPPORTED_MEDIA_TYPE"),
    ],
)
def test_files_that_cannot_be_read_fail_with_their_reason(content, media_type, reason):
    max_chars = 500 if reason == "DOCUMENT_TOO_COMPLEX" and media_type == media.PDF else 100_000
    with pytest.raises(ConversionError) as failed:
        convert(content, media_type, max_chars)
    assert failed.value.reason == reason
