"""Documents as users have them, written by hand for the tests: a PDF manual with bookmarks
and a scanned (empty) page, an HTML page inside its site's navigation and footer, a Word
file with headings and a table; and hostile ones."""

from __future__ import annotations

import io
import zipfile

KILN_PAGES = [
    (
        "1 Introduction",
        "The Ember 40 is an electric kiln for stoneware and porcelain. It plugs into a "
        "32 amp outlet and reaches its top temperature in about seven hours. Stand it on a "
        "fireproof floor at least forty centimetres from every wall, in a room with a window "
        "that opens: the first firing of new elements smells of burning oil for an hour. "
        "The controller keeps nine programs of up to eight segments each; the three most "
        "used, bisque, stoneware glaze and porcelain glaze, come stored as programs one to "
        "three. Read the whole manual before the first firing, and keep it near the kiln.",
    ),
    (
        "2 Loading",
        "Place the shelves on three posts each, never four, so they cannot rock. Leave two "
        "centimetres between pieces and keep glazed feet off the shelves. Bisque ware may "
        "touch and even stack, rims to rims and feet to feet, because unglazed clay does not "
        "stick. Put the heaviest pieces on the lowest shelf and the tallest on the top one, "
        "where the lid leaves the most room. Coat each shelf with kiln wash once a year, on "
        "its top side only, so drips of glaze can be chipped off without harm to the shelf.",
    ),
    (
        "3.2 Limits",
        "Never fire above 1300 degrees Celsius: the elements sag and the warranty ends. "
        "Do not open the lid above 200 degrees, or the glaze crazes. The controller stops a "
        "program that climbs slower than 20 degrees an hour near its top, a sign of worn "
        "elements, and shows the code E-07. Fire no more than three glaze loads a week in "
        "a room warmer than 30 degrees, and leave the vent plug out until 600 degrees so "
        "that the water and carbon in the clay can escape before the glaze melts.",
    ),
]


def kiln_manual_pdf(*, scanned_page: bool = True) -> bytes:
    """Three pages of a kiln manual, each bookmarked, and a last page with no text."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_title("Ember 40 kiln manual")
    for heading, body in KILN_PAGES:
        pdf.add_page()
        pdf.start_section(heading)
        pdf.set_font("Helvetica", "B", 16)
        pdf.cell(0, 10, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=12)
        pdf.multi_cell(0, 6, body)
    if scanned_page:
        pdf.add_page()  # an image-only page: nothing in its text layer
        pdf.rect(20, 20, 100, 60, style="F")
    return bytes(pdf.output())


def encrypted_pdf() -> bytes:
    """The manual behind a password."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(kiln_manual_pdf())))
    writer.encrypt("a secret", algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


GREENHOUSE_HTML = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Winter greenhouse care | Fernhill Gardens</title></head>
<body>
<nav><a href="/">Home</a> <a href="/shop">Shop seeds</a> <a href="/visit">Visit us</a>
<a href="/login">Log in</a></nav>
<div class="banner">Free delivery on orders over 40 euros!</div>
<main><article>
<h1>Winter greenhouse care</h1>
<p>An unheated greenhouse keeps lettuce, spinach and rocket growing until February if the
vents are opened for an hour on sunny days, so that condensation does not rot the leaves.</p>
<h2>Heating</h2>
<p>A paraffin heater keeps the frost off a three metre greenhouse; set it to start at
four degrees Celsius and bubble-wrap the north wall to halve the fuel it burns.</p>
<h2>Watering</h2>
<p>Water in the morning, at the base of each plant, and only when the top two centimetres
of compost are dry: cold wet roots are what kill plants in winter.</p>
<table><tr><th>Crop</th><th>Sow by</th></tr><tr><td>Winter lettuce</td><td>September</td></tr>
<tr><td>Broad beans</td><td>November</td></tr></table>
</article></main>
<aside><h3>You may also like</h3><a href="/p/1">Ten tomato varieties for beginners</a></aside>
<footer>Fernhill Gardens, 12 Mill Lane. Privacy. Cookies. Terms of sale.</footer>
</body></html>
"""


def grant_docx() -> bytes:
    """A grant application in Word: a title, headings, and a budget table."""
    import docx

    document = docx.Document()
    document.core_properties.title = "Community orchard grant"
    document.add_heading("Community orchard grant", level=0)
    document.add_heading("Purpose", level=1)
    document.add_paragraph(
        "The grant pays for forty fruit trees on the old allotment site, planted by "
        "volunteers in March, and for their care for three years."
    )
    document.add_heading("Budget", level=1)
    table = document.add_table(rows=3, cols=2)
    for r, row in enumerate([("Item", "Euros"), ("Trees", "2400"), ("Tools", "650")]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    document.add_heading("Reporting", level=2)
    document.add_paragraph("A report on how many trees survived is due every October.")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def zip_bomb_docx() -> bytes:
    """A .docx whose document.xml unpacks to 50 MB from a few kilobytes."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", b" " * 50_000_000)
    return out.getvalue()


def deeply_nested_html(depth: int = 200_000) -> bytes:
    """A page whose one paragraph sits inside `depth` nested elements."""
    return (
        b"<html><body>" + b"<div>" * depth + b"<p>deep</p>" + b"</div>" * depth + b"</body></html>"
    )


def truncated_pdf() -> bytes:
    """The manual cut off halfway, as an interrupted download leaves it."""
    whole = kiln_manual_pdf()
    return whole[: len(whole) // 2]
