"""What a document's bytes are: read from the bytes, the declared type only checked."""

from __future__ import annotations

import pytest

from rag_common.errors import InvalidArgument
from rag_query.conversion import media
from tests.support import documents


def refusal(content: bytes, declared: str = "") -> str:
    with pytest.raises(InvalidArgument) as refused:
        media.sniff(content, declared, field="documents[3].content")
    assert refused.value.field == "documents[3].content"
    return refused.value.reason


def test_formats_are_read_from_the_content_whatever_they_are_called():
    assert media.sniff(documents.kiln_manual_pdf()) == media.PDF
    assert media.sniff(documents.grant_docx()) == media.DOCX
    assert media.sniff(documents.GREENHOUSE_HTML) == media.HTML
    assert media.sniff(b"\xef\xbb\xbf<!DOCTYPE html><p>hi</p>") == media.HTML
    assert media.sniff("Ärger mit Umlauten? Nein.".encode()) == media.TEXT
    assert media.sniff(b"# Notes", "text/markdown; charset=utf-8") == media.MARKDOWN


def test_a_declared_type_the_content_contradicts_is_refused():
    assert refusal(documents.GREENHOUSE_HTML, media.PDF) == "UNSUPPORTED_MEDIA_TYPE"
    assert refusal(documents.kiln_manual_pdf(), media.DOCX) == "UNSUPPORTED_MEDIA_TYPE"
    assert refusal(b"plain words", "image/png") == "UNSUPPORTED_MEDIA_TYPE"
    # Text types stand for one another, and markup declared as text stays text.
    assert media.sniff(b"<p>a tag, shown as text</p>", media.TEXT) == media.TEXT
    assert media.sniff(b"plain", media.RST) == media.RST


def test_binary_files_of_other_formats_are_refused_with_a_reason():
    assert refusal(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4) == "UNSUPPORTED_MEDIA_TYPE"
    legacy_doc = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512)
    assert refusal(legacy_doc) == "UNSUPPORTED_MEDIA_TYPE"
    encrypted_docx = legacy_doc + "EncryptionInfo".encode("utf-16-le")
    assert refusal(encrypted_docx) == "ENCRYPTED_DOCUMENT"


def test_a_character_cut_at_the_end_of_the_sample_is_still_text():
    text = ("é" * 3000).encode()  # 6000 bytes: the 4096-byte sample ends inside a character
    assert media.sniff(text[:4097]) == media.TEXT


def test_a_page_in_another_charset_is_still_html():
    latin1 = (
        b'<!doctype html>\r\n<html><head><meta http-equiv="Content-Type" '
        b'content="text/html; charset=ISO-8859-1"></head><body><p>Gr\xfc\xdfe aus Erfurt</p>'
    )
    assert media.sniff(latin1) == media.HTML
