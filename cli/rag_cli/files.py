"""Turn files and folders into documents for ingestion: text as text, and PDF, HTML and DOCX
files as their bytes, which the query service converts (in a sandbox)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from rag.v1 import common_pb2
from rag_common.errors import InvalidArgument
from rag_query.conversion import media

# Text is picked by name as well (a folder of code is text too); the other formats by content.
TEXT_SUFFIXES = (".md", ".markdown", ".txt", ".text", ".rst", "")
_KINDS = {media.PDF: "pdf", media.HTML: "html", media.DOCX: "docx"}
_SNIFF_BYTES = 4096
_UNSAFE = re.compile(r"[^A-Za-z0-9._:/-]+")
_HEADING = re.compile(r"^\s*#+\s+(.+)$|^(.+)\n[=-]{3,}\s*$", re.MULTILINE)


def find_files(paths: Iterable[str | Path]) -> list[Path]:
    """Every file named, and every supported one found under the given folders, sorted: a
    PDF, HTML or DOCX file by its content, whatever its name; text by its name as well."""
    found: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.update(
                p
                for p in path.rglob("*")
                if p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
                and _supported(p)
            )
        elif path.is_file():
            found.add(path)
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
    return sorted(found)


def document_id(path: Path) -> str:
    """A stable document id from a path (relative to the working folder when inside it)."""
    try:
        name = path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        name = path.resolve().as_posix().lstrip("/")
    return _UNSAFE.sub("_", name)[-128:]


def media_type(path: Path) -> str | None:
    """What the file is, read from its first bytes; None for none the suite reads."""
    with path.open("rb") as file:
        head = file.read(_SNIFF_BYTES)
    try:
        return media.sniff(head)
    except InvalidArgument:
        return None


def _supported(path: Path) -> bool:
    kind = media_type(path)
    return kind is not None and (
        kind not in media.TEXT_TYPES or path.suffix.lower() in TEXT_SUFFIXES
    )


def to_document(path: Path, as_id: str = "") -> common_pb2.Document:
    """Read a file as a Document: text with its first heading (else the file name) as title;
    any other file as its bytes, titled by the service from the document itself. Its id is
    `as_id`, else one made from its path."""
    kind = media_type(path)
    identifier = as_id or document_id(path)
    if kind not in media.TEXT_TYPES:  # None too: the service says why it refuses it
        return common_pb2.Document(
            id=identifier,
            content=path.read_bytes(),
            media_type=kind or "",
            source=str(path),
            metadata={"type": _KINDS.get(kind, path.suffix.lower().lstrip("."))},
        )
    text = path.read_text(encoding="utf-8", errors="replace")
    heading = _HEADING.search(text)
    title = (heading.group(1) or heading.group(2)).strip() if heading else path.name
    return common_pb2.Document(
        id=identifier,
        text=text,
        title=title[:512],
        source=str(path),
        metadata={"type": path.suffix.lower().lstrip(".")},
    )


def batches(
    paths: list[Path], max_docs: int = 16, max_chars: int = 400_000
) -> Iterator[list[Path]]:
    """Group files into calls of bounded size."""
    batch: list[Path] = []
    size = 0
    for path in paths:
        length = path.stat().st_size
        if batch and (len(batch) >= max_docs or size + length > max_chars):
            yield batch
            batch, size = [], 0
        batch.append(path)
        size += length
    if batch:
        yield batch
