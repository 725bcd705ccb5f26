from __future__ import annotations

from pathlib import Path

from scripts.error_table import table
from scripts.readme_sections import section
from scripts.settings_table import tables

README = Path(__file__).parents[2] / "README.md"


def test_readme_documents_every_setting_as_the_code_defines_it():
    assert section(README.read_text(), "settings") == tables().strip()


def test_readme_lists_every_error_reason_the_code_names():
    assert section(README.read_text(), "errors") == table().strip()


def test_readme_gives_the_two_set_up_commands():
    text = README.read_text()
    assert "make run" in text and "make test" in text
