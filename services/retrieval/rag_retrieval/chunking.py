"""Split text into overlapping chunks that end on natural boundaries where possible, and
name the section headings each chunk sits under and the page it is on.

Pages are separated by form feeds (\\f), as converted PDFs have them; a text without one
has no pages. No chunk runs onto the next page, so the page an answer cites holds all of it.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

# Coarsest first: a chunk is cut at a paragraph break, else a line break, a sentence end,
# a space, and only as a last resort mid-word (a page's end is always a cut).
_SEPARATORS = ("\n\n", "\n", ". ", " ")
_BLANK_RUNS = re.compile(r"\n{3,}")
_MARKDOWN_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
# reStructuredText: a line of one repeated punctuation character under (and maybe over) a title.
_RST_ADORNMENT = re.compile(r"^([=\-~^\"'`#*+:.])\1{2,}[ \t]*$")
_MAX_HEADING_CHARS = 200
PAGE_BREAK = "\f"


@dataclass(frozen=True)
class Chunk:
    """A piece of a document, the headings it sits under (outermost first), and the page
    it is on (from 1; 0 in a text without pages)."""

    text: str
    headings: tuple[str, ...] = ()
    page: int = 0

    @property
    def section(self) -> str:
        """The innermost heading it sits under, or ""."""
        return self.headings[-1] if self.headings else ""

    def indexed_text(self, title: str) -> str:
        """What search indexes for this chunk: the title and headings give a chunk deep in
        a section the topic its own words may never name."""
        context = [title] if title else []
        context.extend(h for h in self.headings if h != title)
        return "\n".join([" > ".join(context), self.text]) if context else self.text


def chunk_text(text: str, size: int, overlap: int) -> list[str]:
    """Return chunks of at most `size` characters, each starting `overlap` characters back.

    Deterministic: the same text, size and overlap always give the same chunks, which is
    what makes chunk ids stable across re-ingestion.
    """
    return [chunk.text for chunk in chunk_document(text, size, overlap)]


def chunk_document(text: str, size: int, overlap: int) -> list[Chunk]:
    """`chunk_text`'s chunks, each with the Markdown or reStructuredText headings in force
    where it starts."""
    if overlap >= size:
        raise ValueError("overlap must be smaller than size")
    text = _BLANK_RUNS.sub("\n\n", text.strip())
    outline = _Outline(text)
    page_breaks = [i for i, c in enumerate(text) if c == PAGE_BREAK] if PAGE_BREAK in text else []
    chunks: list[Chunk] = []
    start = 0
    while start < len(text):
        end = _cut_point(text, start, size)
        raw = text[start:end]
        piece = raw.strip()
        if piece:
            first = start + len(raw) - len(raw.lstrip())
            page = bisect.bisect_right(page_breaks, first) + 1 if page_breaks else 0
            piece = piece.replace(PAGE_BREAK, "\n")
            chunks.append(Chunk(piece, outline.headings_at(first), page))
        if end >= len(text):
            break
        start = _next_start(text, start, end, overlap)
    return chunks


class _Outline:
    """Where each heading starts, and its level, so any offset maps to its heading path."""

    def __init__(self, text: str) -> None:
        self._offsets: list[int] = []
        self._paths: list[tuple[str, ...]] = []
        path: list[tuple[int, str]] = []
        for offset, level, title in _headings(text):
            while path and path[-1][0] >= level:
                path.pop()
            path.append((level, title))
            self._offsets.append(offset)
            self._paths.append(tuple(t for _, t in path))

    def headings_at(self, offset: int) -> tuple[str, ...]:
        """The heading path in force at `offset`; a chunk starting on a heading line is
        under that heading."""
        at = bisect.bisect_right(self._offsets, offset) - 1
        return self._paths[at] if at >= 0 else ()


def _headings(text: str) -> list[tuple[int, int, str]]:
    """(offset, level, title) of every heading, outside fenced code blocks.

    Markdown levels are the number of #; reStructuredText levels follow the order in
    which adornment styles first appear, as docutils assigns them, after Markdown's six.
    """
    lines = text.split("\n")
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    rst_styles: list[tuple[str, bool]] = []
    found: list[tuple[int, int, str]] = []
    in_fence = False
    underline_at = -1  # the line under the last reStructuredText title: never a fence
    for i, line in enumerate(lines):
        if i == underline_at:
            continue
        if _FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        markdown = _MARKDOWN_HEADING.match(line)
        if markdown:
            found.append((offsets[i], len(markdown.group(1)), _clean(markdown.group(2))))
            continue
        title = line.strip()
        under = lines[i + 1] if i + 1 < len(lines) else ""
        adornment = _RST_ADORNMENT.match(under)
        if not title or not adornment or _RST_ADORNMENT.match(line):
            continue
        if len(under.rstrip()) < len(title):
            continue
        overlined = i > 0 and lines[i - 1].rstrip() == under.rstrip()
        style = (adornment.group(1), overlined)
        if style not in rst_styles:
            rst_styles.append(style)
        start = offsets[i - 1] if overlined else offsets[i]
        found.append((start, 7 + rst_styles.index(style), _clean(title)))
        underline_at = i + 1
    return found


def _clean(title: str) -> str:
    return " ".join(title.replace("`", "").replace("*", "").split())[:_MAX_HEADING_CHARS]


def _cut_point(text: str, start: int, size: int) -> int:
    hard_end = min(start + size, len(text))
    page_end = text.find(PAGE_BREAK, start, hard_end)
    if page_end != -1:
        # A chunk across a page break would cite the first page for text on the next (found
        # by `rag eval` over PDFs: a third of the answers named the page before the right one).
        return page_end + 1
    if hard_end == len(text):
        return len(text)
    window = text[start:hard_end]
    for separator in _SEPARATORS:
        at = window.rfind(separator)
        # Only accept a boundary in the second half, so chunks do not become tiny.
        if at >= size // 2:
            return start + at + len(separator)
    return hard_end


def _next_start(text: str, start: int, end: int, overlap: int) -> int:
    if overlap == 0 or text[end - 1] == PAGE_BREAK:
        return end  # a new page starts afresh: its chunks say they are on it
    back = max(end - overlap, start + 1)
    # Begin the overlap at a word boundary so no chunk starts mid-word.
    space = text.find(" ", back, end)
    return space + 1 if space != -1 else back
