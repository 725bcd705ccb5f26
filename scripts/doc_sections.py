"""Generated sections of the docs, between `<!-- NAME:begin ... -->` and `<!-- NAME:end -->`."""

from __future__ import annotations

from pathlib import Path

DOCS = Path(__file__).parents[1] / "docs"


def section(text: str, name: str) -> str:
    """What the document `text` holds between the markers of `name`, stripped."""
    after_begin = text.split(f"<!-- {name}:begin", 1)[1].split("-->\n", 1)[1]
    return after_begin.split(f"<!-- {name}:end -->")[0].strip()


def replace_section(name: str, content: str, path: Path) -> None:
    """Put `content` between the markers of `name` in the document at `path`."""
    text = path.read_text()
    head, rest = text.split(f"<!-- {name}:begin", 1)
    begin_line, after = rest.split("-->\n", 1)
    _, tail = after.split(f"<!-- {name}:end -->", 1)
    path.write_text(f"{head}<!-- {name}:begin{begin_line}-->\n{content}\n<!-- {name}:end -->{tail}")
