"""Turn files and folders into documents for ingestion."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from rag.v1 import common_pb2

SUFFIXES = (".md", ".txt", ".rst")
_UNSAFE = re.compile(r"[^A-Za-z0-9._:/-]+")
_HEADING = re.compile(r"^\s*#+\s+(.+)$|^(.+)\n[=-]{3,}\s*$", re.MULTILINE)


def find_files(paths: Iterable[str | Path]) -> list[Path]:
    """Every .md, .txt and .rst file named or found under the given folders, sorted."""
    found: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.update(
                p
                for p in path.rglob("*")
                if p.is_file()
                and p.suffix.lower() in SUFFIXES
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
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


def to_document(path: Path) -> common_pb2.Document:
    """Read a file as a Document; its title is the first heading, else the file name."""
    text = path.read_text(encoding="utf-8", errors="replace")
    heading = _HEADING.search(text)
    title = (heading.group(1) or heading.group(2)).strip() if heading else path.name
    return common_pb2.Document(
        id=document_id(path),
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
