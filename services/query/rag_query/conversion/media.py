"""What a document's bytes are, read from the bytes themselves (their declared type is only
checked against them)."""

from __future__ import annotations

from rag_common.errors import InvalidArgument
from rag_common.reasons import Reason

PDF = "application/pdf"
HTML = "text/html"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
MARKDOWN = "text/markdown"
RST = "text/x-rst"
TEXT = "text/plain"

TEXT_TYPES = frozenset({MARKDOWN, RST, TEXT})
SUPPORTED = frozenset({PDF, HTML, DOCX, *TEXT_TYPES})
# Types people and libraries also use for the same formats.
_ALIASES = {
    "application/xhtml+xml": HTML,
    "text/x-markdown": MARKDOWN,
    "text/prs.fallenstein.rst": RST,
    "text/rst": RST,
}

_ZIP = b"PK\x03\x04"
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # Office's container: legacy .doc, encrypted files
_ENCRYPTED_OOXML = "EncryptionInfo".encode("utf-16-le")  # a stream of an encrypted .docx
_HTML_MARKS = (b"<!doctype html", b"<html", b"<head", b"<body")


def sniff(content: bytes, declared: str = "", *, field: str = "content") -> str:
    """The media type of `content`; INVALID_ARGUMENT naming `field` when it is none this
    suite reads, is encrypted, or contradicts `declared`."""
    declared = _ALIASES.get(
        declared.split(";")[0].strip().lower(), declared.split(";")[0].strip().lower()
    )
    found = _by_magic(content)
    if found is None:
        if content.startswith(_OLE):
            if _ENCRYPTED_OOXML in content:
                raise InvalidArgument(
                    field, "a password-protected Office file", reason=Reason.ENCRYPTED_DOCUMENT
                )
            raise _unsupported(field, "a legacy Office file (.doc, .xls, .ppt): save it as .docx")
        found = _text_type(content, declared, field)
    if declared and declared != found and not (declared in TEXT_TYPES and found in TEXT_TYPES):
        raise _unsupported(field, f"declared {declared}, but the content is {found}")
    return found


def _by_magic(content: bytes) -> str | None:
    # PDF readers accept the header anywhere in the first kilobyte.
    if b"%PDF-" in content[:1024]:
        return PDF
    if content.startswith(_ZIP):
        return DOCX  # whether the archive really is one is for the converter to find
    return None


def _text_type(content: bytes, declared: str, field: str) -> str:
    if _looks_like_html(content[:1024]):
        return declared if declared in TEXT_TYPES else HTML  # in whatever charset it says
    try:
        content[:4096].decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < 4090:  # not a character cut at the end of the sample: not UTF-8
            raise _unsupported(field, "binary content of no supported format") from None
    if declared in (HTML, *TEXT_TYPES):
        return declared  # HTML without its marks, or text that shows HTML: as declared
    if declared:
        raise _unsupported(field, f"{declared} is not a type this suite reads")
    return TEXT


def _looks_like_html(head: bytes) -> bool:
    """An HTML page's marks, read as bytes: pages come in many charsets, and the reader
    finds theirs (a latin-1 page is no UTF-8 text)."""
    lowered = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return lowered.startswith(_HTML_MARKS) or any(mark in lowered for mark in _HTML_MARKS[2:])


def _unsupported(field: str, message: str) -> InvalidArgument:
    return InvalidArgument(field, message, reason=Reason.UNSUPPORTED_MEDIA_TYPE)
