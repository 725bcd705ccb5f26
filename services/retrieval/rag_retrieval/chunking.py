"""Split text into overlapping chunks that end on natural boundaries where possible."""

from __future__ import annotations

import re

# Coarsest first: a chunk is cut at a paragraph break if one fits, else a line break,
# a sentence end, a space, and only as a last resort mid-word.
_SEPARATORS = ("\n\n", "\n", ". ", " ")
_BLANK_RUNS = re.compile(r"\n{3,}")


def chunk_text(text: str, size: int, overlap: int) -> list[str]:
    """Return chunks of at most `size` characters, each starting `overlap` characters back.

    Deterministic: the same text, size and overlap always give the same chunks, which is
    what makes chunk ids stable across re-ingestion.
    """
    if overlap >= size:
        raise ValueError("overlap must be smaller than size")
    text = _BLANK_RUNS.sub("\n\n", text.strip())
    chunks: list[str] = []
    start = 0
    while start < len(text):
        end = _cut_point(text, start, size)
        piece = text[start:end].strip()
        if piece:
            chunks.append(piece)
        if end >= len(text):
            break
        start = _next_start(text, start, end, overlap)
    return chunks


def _cut_point(text: str, start: int, size: int) -> int:
    hard_end = start + size
    if hard_end >= len(text):
        return len(text)
    window = text[start:hard_end]
    for separator in _SEPARATORS:
        at = window.rfind(separator)
        # Only accept a boundary in the second half, so chunks do not become tiny.
        if at >= size // 2:
            return start + at + len(separator)
    return hard_end


def _next_start(text: str, start: int, end: int, overlap: int) -> int:
    if overlap == 0:
        return end
    back = max(end - overlap, start + 1)
    # Begin the overlap at a word boundary so no chunk starts mid-word.
    space = text.find(" ", back, end)
    return space + 1 if space != -1 else back
