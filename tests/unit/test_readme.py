"""The README and the docs: the two set-up commands up front, generated tables as the code
defines them, and no link to a file or section that does not exist."""

from __future__ import annotations

import re
from pathlib import Path

from scripts.doc_sections import DOCS, section
from scripts.error_table import table
from scripts.settings_table import tables

ROOT = Path(__file__).parents[2]
README = ROOT / "README.md"


def test_the_configuration_guide_documents_every_setting_as_the_code_defines_it():
    assert section((DOCS / "configuration.md").read_text(), "settings") == tables().strip()


def test_the_failures_guide_lists_every_error_reason_the_code_names():
    assert section((DOCS / "failures.md").read_text(), "errors") == table().strip()


def test_a_newcomer_finds_the_two_set_up_commands_on_the_first_screen():
    first_screen = "\n".join(README.read_text().splitlines()[:40])
    assert "make run" in first_screen and "make test" in first_screen


def test_every_relative_link_in_the_docs_leads_to_a_file_and_heading_that_exist():
    for page in [README, *DOCS.glob("*.md")]:
        for target in re.findall(r"\]\(([^)#:]*)(#[^)]*)?\)", page.read_text()):
            path, anchor = target
            linked = (page.parent / path).resolve() if path else page
            assert linked.exists(), f"{page.name} links to {path}"
            if anchor and linked.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", linked.read_text(), flags=re.M)
                slugs = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in headings}
                assert anchor[1:] in slugs, f"{page.name} links to {path}{anchor}"
