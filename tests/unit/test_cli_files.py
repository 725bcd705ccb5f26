from __future__ import annotations

import pytest

from rag_cli.files import batches, document_id, find_files, to_document
from rag_common.document_ids import DOCUMENT_ID


def test_folders_are_walked_recursively_for_supported_files(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/one.md", "a/b/two.txt", "a/b/three.rst", "a/b/skip.pdf", "a/.hidden/x.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("text")
    found = sorted(p.name for p in find_files([tmp_path / "a"]))
    assert found == ["one.md", "three.rst", "two.txt"]
    with pytest.raises(FileNotFoundError):
        find_files([tmp_path / "missing"])


def test_documents_get_valid_ids_and_a_title_from_the_first_heading(tmp_path):
    path = tmp_path / "my notes (draft).md"
    path.write_text("Intro line\n\n## Release plan\n\nShip it.")
    document = to_document(path)
    assert DOCUMENT_ID.match(document.id)
    assert document.id == document_id(path)
    assert document.title == "Release plan"
    assert document.source == str(path)


def test_batches_bound_files_per_call(tmp_path):
    paths = []
    for i in range(40):
        path = tmp_path / f"{i}.txt"
        path.write_text("x" * 100)
        paths.append(path)
    groups = list(batches(paths, max_docs=16))
    assert [len(g) for g in groups] == [16, 16, 8]
