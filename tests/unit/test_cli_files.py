from __future__ import annotations

import pytest

from rag.v1 import query_service_pb2 as pb
from rag_cli.commands.ask import source_label
from rag_cli.files import batches, document_id, find_files, to_document
from rag_common.document_ids import DOCUMENT_ID
from rag_query.conversion import media
from tests.support import documents


def test_folders_are_walked_recursively_for_supported_files(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/one.md", "a/b/two.txt", "a/b/three.rst", "a/b/skip.pdf", "a/.hidden/x.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("text")
    found = sorted(p.name for p in find_files([tmp_path / "a"]))
    assert found == ["one.md", "three.rst", "two.txt"]
    with pytest.raises(FileNotFoundError):
        find_files([tmp_path / "missing"])


def test_pdf_html_and_word_files_are_found_by_their_content_whatever_their_names(tmp_path):
    (tmp_path / "scan-2024").write_bytes(documents.kiln_manual_pdf())  # no suffix at all
    (tmp_path / "greenhouse.htm").write_bytes(documents.GREENHOUSE_HTML)
    (tmp_path / "grant.DOCX").write_bytes(documents.grant_docx())
    (tmp_path / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    (tmp_path / "tool.py").write_text("print('code is text, but no document')")
    found = sorted(p.name for p in find_files([tmp_path]))
    assert found == ["grant.DOCX", "greenhouse.htm", "scan-2024"]


def test_a_file_that_is_not_text_is_sent_as_it_is_for_the_service_to_read(tmp_path):
    path = tmp_path / "manual.pdf"
    path.write_bytes(documents.kiln_manual_pdf())
    document = to_document(path)
    assert document.content == path.read_bytes() and not document.text
    assert document.media_type == media.PDF and document.metadata["type"] == "pdf"
    named = tmp_path / "archive.tar"
    named.write_bytes(bytes(range(256)) * 4)  # named on the command line: the service refuses it
    assert to_document(named).content and to_document(named).media_type == ""


def test_a_source_says_where_it_is_as_a_reader_looks_it_up():
    paged = pb.QueryResponse().sources.add(
        document_id="manuals/ember-40.pdf", title="report.pdf", page=7, section="3.2 Limits"
    )
    assert source_label(paged) == 'report.pdf, page 7, "3.2 Limits"'
    plain = pb.QueryResponse().sources.add(document_id="notes.md", section="notes.md")
    assert source_label(plain) == "notes.md"


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
