"""Files from public test corpora (tests/data/real): each is read, or refused with the reason
it deserves; none makes a reader fail in a way the sandbox would have to catch."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag_query.conversion import media
from rag_query.conversion.converters import PAGE_BREAK, convert
from rag_query.conversion.errors import ConversionError

REAL = Path(__file__).parents[1] / "data" / "real"


def read(name: str):
    content = (REAL / name).read_bytes()
    return convert(content, media.sniff(content), 1_000_000)


def test_a_latex_pdf_keeps_its_four_pages_and_its_numbered_bookmarks():
    converted = read("pdflatex-outline.pdf")
    assert converted.pages == 4 and converted.pages_without_text == ()
    second = converted.text.split(PAGE_BREAK)[1]
    assert second.strip().startswith("# 1 Foo\nHello, here is some text")


def test_office_and_web_files_read_as_their_text():
    assert "Lorem ipsum dolor" in read("002-trivial-libre-office-writer.pdf").text
    assert "Three hyperlinks: the first one here" in read("par-hyperlinks.docx").text
    tables = read("tbl-props.docx").text
    assert "a | b | c | d\ne | f | g" in tables and " |  | " not in tables
    page = read("womencantalksports.com.top10.html")
    assert page.title == "Top 10 Women Talking Sports"
    assert "45% of NFL fans are female" in page.text
    assert (
        "## Das Ministerium für Club-Kultur informiert" in read("die-partei.net.luebeck.html").text
    )


@pytest.mark.parametrize(
    ("name", "reason"),
    [("libreoffice-writer-password.pdf", "ENCRYPTED_DOCUMENT"), ("imagemagick-lzw.pdf", "NO_TEXT")],
)
def test_a_protected_or_image_only_pdf_is_refused_with_its_reason(name, reason):
    with pytest.raises(ConversionError) as refused:
        read(name)
    assert refused.value.reason == reason
