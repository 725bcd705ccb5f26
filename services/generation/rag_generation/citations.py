"""Map `[n]` citations in an answer back to the numbered sources it was given."""

from __future__ import annotations

import re

_CITATION = re.compile(r"\[(\d{1,3})\]")


def cited_sources(text: str, source_count: int) -> list[int]:
    """Source numbers (from 1) the text cites, in order of first mention; invented ones dropped."""
    seen: dict[int, None] = {}
    for match in _CITATION.finditer(text):
        number = int(match.group(1))
        if 1 <= number <= source_count:
            seen.setdefault(number, None)
    return list(seen)
