"""Two readers per format side by side on a folder of real files: files read, files refused,
time per file and characters of text, for the choice in rag_query.conversion.converters.

    python -m rag_bench.conversion pdf:FOLDER html:FOLDER docx:FOLDER

Each reader runs in this process, file by file, on the files of its format's folder (any
name); the suite's own reader is the first of each pair.
"""

from __future__ import annotations

import io
import re
import statistics
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from xml.etree import ElementTree

from rag_query.conversion import media
from rag_query.conversion.converters import convert

MAX_CHARS = 10_000_000
# Words of menus, banners, sharing and comment sections (the corpus of web pages is mostly
# German): how much of a page's chrome a reader kept.
_CHROME = re.compile(
    r"\b(cookies?|share|tweet|newsletter|impressum|datenschutz|kommentar\w*|comments?|"
    r"related|login|anmelden|menu|menü|suche|search)\b",
    re.IGNORECASE,
)


def _suite(media_type: str) -> Callable[[bytes], str]:
    return lambda content: convert(content, media_type, MAX_CHARS).text


def _pypdf(content: bytes) -> str:
    from pypdf import PdfReader

    return "\f".join(page.extract_text() or "" for page in PdfReader(io.BytesIO(content)).pages)


def _selectolax(content: bytes) -> str:
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(content)
    for selector in ("nav", "header", "footer", "aside", "script", "style", "form", "noscript"):
        for node in tree.css(selector):
            node.decompose()
    root = tree.css_first("main") or tree.css_first("article") or tree.body
    return root.text(separator="\n", strip=True) if root is not None else ""


_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


def _docx_xml(content: bytes) -> str:
    body = ElementTree.fromstring(zipfile.ZipFile(io.BytesIO(content)).read("word/document.xml"))
    return "\n\n".join(
        "".join(t.text or "" for t in paragraph.iter(f"{_W}t")) for paragraph in body.iter(f"{_W}p")
    )


READERS = {
    "pdf": [("pypdfium2 (chosen)", _suite(media.PDF)), ("pypdf", _pypdf)],
    "html": [("trafilatura (chosen)", _suite(media.HTML)), ("selectolax rules", _selectolax)],
    "docx": [("python-docx (chosen)", _suite(media.DOCX)), ("XML by hand", _docx_xml)],
}


def compare(kind: str, folder: Path) -> list[str]:
    """One line per reader of `kind` over every file in `folder`."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.stat().st_size)
    lines = [f"{kind}: {len(files)} files in {folder}"]
    for name, read in READERS[kind]:
        times, chars, chrome, refused = [], 0, 0, 0
        for path in files:
            content = path.read_bytes()
            started = time.perf_counter()
            try:
                text = read(content)
            except Exception:  # ConversionError or a reader's own: a refusal here
                refused += 1
                continue
            times.append((time.perf_counter() - started) * 1000)
            chars += len(text)
            chrome += len(_CHROME.findall(text))
        median = statistics.median(times) if times else 0.0
        lines.append(
            f"  {name:22} read {len(times):4}  refused {refused:3}  "
            f"median {median:7.1f} ms  total {sum(times):8.0f} ms  {chars:10,} chars  "
            f"{chrome:5} chrome words"
        )
    return lines


def main(argv: list[str]) -> None:
    """Compare the readers of each `kind:FOLDER` argument."""
    for argument in argv:
        kind, _, folder = argument.partition(":")
        print("\n".join(compare(kind, Path(folder))))


if __name__ == "__main__":
    main(sys.argv[1:])
