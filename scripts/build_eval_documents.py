"""Render the hand-written sources in bench/data/documents/source as the PDF and DOCX files
that `rag eval` ingests (the HTML files there are written by hand as they are).

Source markup: `# title`, `## heading`, `===` for a page break (PDF), `| a | b |` table rows,
anything else a paragraph. Run `python -m scripts.build_eval_documents` after editing one.
"""

from __future__ import annotations

from pathlib import Path

import docx
from fpdf import FPDF

ROOT = Path(__file__).resolve().parent.parent / "bench" / "data" / "documents"
FORMATS = {
    "water-plant-manual": "pdf",
    "bike-workshop-handbook": "pdf",
    "staff-handbook": "docx",
    "research-fund-guidance": "docx",
    # Near neighbours of the documents above, which no question is about.
    "pool-water-guide": "pdf",
    "travel-policy": "pdf",
    "it-acceptable-use": "docx",
}


def blocks(text: str) -> list[tuple[str, str]]:
    """(kind, text) for each line: title, heading, page, row or paragraph."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line == "===":
            out.append(("page", ""))
        elif line.startswith("## "):
            out.append(("heading", line[3:]))
        elif line.startswith("# "):
            out.append(("title", line[2:]))
        elif line.startswith("|"):
            out.append(("row", line))
        else:
            out.append(("paragraph", line))
    return out


def cells(row: str) -> list[str]:
    """The cells of a `| a | b |` row."""
    return [cell.strip() for cell in row.strip("|").split("|")]


def write_pdf(source: list[tuple[str, str]], path: Path) -> None:
    """A PDF with a text layer, one page per `===` section."""
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(auto=True, margin=20)
    pdf.set_creator("rag eval documents")
    pdf.add_page()
    for kind, text in source:
        if kind == "page":
            pdf.add_page()
        elif kind == "title":
            pdf.set_title(text)
            pdf.set_font("Helvetica", "B", 18)
            pdf.multi_cell(0, 9, text, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(4)
        elif kind == "heading":
            pdf.set_font("Helvetica", "B", 14)
            pdf.multi_cell(0, 8, text, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)
        else:
            pdf.set_font("Helvetica", "", 11)
            pdf.multi_cell(0, 6, text, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(3)
    pdf.output(str(path))


def write_docx(source: list[tuple[str, str]], path: Path) -> None:
    """A Word file with real heading styles and tables."""
    document = docx.Document()
    table = None
    for kind, text in source:
        if kind != "row":
            table = None
        if kind == "title":
            document.core_properties.title = text
            document.add_heading(text, level=0)
        elif kind == "heading":
            document.add_heading(text, level=1)
        elif kind == "paragraph":
            document.add_paragraph(text)
        elif kind == "row":
            values = cells(text)
            if table is None:
                table = document.add_table(rows=0, cols=len(values))
                table.style = "Table Grid"
            for cell, value in zip(table.add_row().cells, values, strict=True):
                cell.text = value
    document.save(str(path))


def main() -> None:
    """Write every rendered file next to the hand-written HTML ones."""
    for name, kind in FORMATS.items():
        source = blocks((ROOT / "source" / f"{name}.txt").read_text(encoding="utf-8"))
        target = ROOT / "files" / f"{name}.{kind}"
        (write_pdf if kind == "pdf" else write_docx)(source, target)
        print(f"{target.relative_to(ROOT)}: {target.stat().st_size} bytes")


if __name__ == "__main__":
    main()
