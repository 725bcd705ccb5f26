"""Read a document's bytes as text: Markdown headings for its headings, form feeds between its
pages. Runs in the sandbox's child process (see sandbox.py), never in a service's own.

Chosen on speed and output, measured on the same files (docs/configuration.md has the
figures): pypdfium2 (Chrome's PDFium) over pypdf, trafilatura over selectolax (it finds a
page's main content without rules per site), python-docx over reading the XML by hand
(headings by style name and tables, for about 20 ms a file).
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass

from rag_query.conversion import media
from rag_query.conversion.errors import ConversionError

PAGE_BREAK = "\f"  # what the chunker counts pages by, on a line of its own
# A .docx is a zip: refused when it would unpack to more than this, or far more than it is.
MAX_UNPACKED_BYTES = 256 * 1024 * 1024
MAX_UNPACK_RATIO = 200


@dataclass(frozen=True)
class Converted:
    """A document as text, and what was learnt reading it."""

    text: str
    media_type: str
    title: str = ""
    pages: int = 0
    pages_without_text: tuple[int, ...] = ()


def convert(content: bytes, media_type: str, max_chars: int) -> Converted:
    """`content`, of `media_type` (as `media.sniff` found it), as text of at most
    `max_chars` characters; raises ConversionError."""
    read = {media.PDF: _pdf, media.HTML: _html, media.DOCX: _docx}.get(media_type, _text)
    converted = read(content, max_chars)
    if not converted.text.replace(PAGE_BREAK, "").strip():
        raise ConversionError("NO_TEXT", "the document holds no text")
    return converted


def _text(content: bytes, max_chars: int) -> Converted:
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConversionError("UNSUPPORTED_MEDIA_TYPE", "text that is not UTF-8") from None
    return Converted(_bounded(text, max_chars), media.TEXT)


# The parsers are imported where they are used: the service's own process only decodes
# text and never loads them; the sandbox's fork server imports them once (PARSERS).
PARSERS = ("pypdfium2", "trafilatura", "docx")


def _pdf(content: bytes, max_chars: int) -> Converted:
    import pypdfium2 as pdfium

    try:
        document = pdfium.PdfDocument(content)
    except pdfium.PdfiumError as exc:
        if "password" in str(exc).lower():
            raise ConversionError("ENCRYPTED_DOCUMENT", "a password-protected PDF") from None
        raise ConversionError("UNREADABLE_DOCUMENT", f"not a readable PDF ({exc})") from None
    title = (document.get_metadata_dict().get("Title") or "").strip()
    pages = (
        document[index].get_textpage().get_text_range().replace("\r\n", "\n")
        for index in range(len(document))
    )
    return _pages(pages, _outline(document), title, max_chars)


def _pages(
    pages: Iterable[str], headings: dict[int, list[tuple[int, str]]], title: str, max_chars: int
) -> Converted:
    """A PDF's pages as one text, each with its bookmarks as headings, form feeds between."""
    texts, empty, total = [], [], 0
    for index, text in enumerate(pages):
        if not text.strip():
            empty.append(index + 1)
        text = _with_headings(text, headings.get(index, []))
        total += len(text) + 3
        if total > max_chars:
            raise _too_long(max_chars)
        texts.append(text)
    joined = f"\n{PAGE_BREAK}\n".join(texts)
    return Converted(joined, media.PDF, title[:512], len(texts), tuple(empty))


def _outline(document) -> dict[int, list[tuple[int, str]]]:
    """The PDF's bookmarks by page index: (level from 1, title)."""
    by_page: dict[int, list[tuple[int, str]]] = {}
    for bookmark in document.get_toc(max_depth=6):
        destination = bookmark.get_dest()
        title = " ".join(bookmark.get_title().split())
        if destination is not None and title:
            by_page.setdefault(destination.get_index(), []).append((bookmark.level + 1, title))
    return by_page


def _with_headings(text: str, headings: list[tuple[int, str]]) -> str:
    """The page's text with its bookmarks' lines marked as Markdown headings: the first line
    that is a bookmark's title, with or without its section number ("3.2 Limits" for the
    bookmark "Limits"). A title the page does not show is left out rather than guessed."""
    for level, title in headings:
        line = re.search(
            rf"(?m)^[ \t]*((?:\d+(?:\.\d+)*\.?[ \t]+)?{re.escape(title)})[ \t]*$", text
        )
        if line and not line.group(0).lstrip().startswith("#"):
            marked = f"{'#' * level} {' '.join(line.group(1).split())}"
            text = text[: line.start()] + marked + text[line.end() :]
    return text


def _html(content: bytes, max_chars: int) -> Converted:
    import trafilatura

    page = trafilatura.bare_extraction(
        content,
        include_tables=True,
        include_formatting=True,  # headings as Markdown
        favor_recall=True,
        with_metadata=True,
    )
    if page is None or not (page.text or "").strip():
        raise ConversionError("NO_TEXT", "the page has no main content")
    return Converted(_bounded(page.text, max_chars), media.HTML, (page.title or "")[:512])


def _docx(content: bytes, max_chars: int) -> Converted:
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    _check_archive(content)
    try:
        document = docx.Document(io.BytesIO(content))
    except (KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise ConversionError("UNREADABLE_DOCUMENT", f"not a readable DOCX ({exc})") from None
    parts: list[str] = []
    total = 0
    for element in document.element.body.iterchildren():
        if not isinstance(element.tag, str):
            continue  # a comment or processing instruction: no content
        kind = element.tag.rsplit("}", 1)[-1]
        if kind == "p":
            part = _paragraph(Paragraph(element, document))
        elif kind == "tbl":
            part = _table(Table(element, document))
        else:
            continue
        if part:
            total += len(part) + 2
            if total > max_chars:
                raise _too_long(max_chars)
            parts.append(part)
    title = (document.core_properties.title or "").strip()
    return Converted("\n\n".join(parts), media.DOCX, title[:512])


def _check_archive(content: bytes) -> None:
    """Refuse a zip bomb before any of it is unpacked, and a zip that is no .docx."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(content))
    except zipfile.BadZipFile:
        raise ConversionError("UNREADABLE_DOCUMENT", "not a readable zip archive") from None
    with archive:
        names = archive.namelist()
        if "word/document.xml" not in names:
            raise ConversionError("UNSUPPORTED_MEDIA_TYPE", "a zip archive that is no .docx")
        unpacked = sum(info.file_size for info in archive.infolist())
    if unpacked > MAX_UNPACKED_BYTES or unpacked > MAX_UNPACK_RATIO * max(len(content), 1):
        raise ConversionError(
            "DOCUMENT_TOO_COMPLEX", f"the archive would unpack to {unpacked} bytes"
        )


def _paragraph(paragraph) -> str:
    text = paragraph.text.strip()
    style = paragraph.style.name if paragraph.style is not None else ""
    level = _heading_level(style)
    return f"{'#' * level} {' '.join(text.split())}" if text and level else text


def _heading_level(style: str) -> int:
    if style == "Title":
        return 1
    words = style.split()
    if len(words) == 2 and words[0] == "Heading" and words[1].isdigit():
        return min(int(words[1]), 6)
    return 0


def _table(table) -> str:
    rows = []
    for row in table.rows:
        cells = [" ".join(cell.text.split()) for cell in row.cells]
        if any(cells):  # a row of empty cells says nothing
            rows.append(" | ".join(cells))
    return "\n".join(rows)


def _bounded(text: str, max_chars: int) -> str:
    if len(text) > max_chars:
        raise _too_long(max_chars)
    return text


def _too_long(max_chars: int) -> ConversionError:
    return ConversionError(
        "DOCUMENT_TOO_COMPLEX", f"more than {max_chars} characters of text once converted"
    )
