from __future__ import annotations

from pathlib import Path

from scripts.settings_table import tables

README = Path(__file__).parents[2] / "README.md"


def test_readme_documents_every_setting_as_the_code_defines_it():
    text = README.read_text()
    after_begin = text.split("<!-- settings:begin", 1)[1].split("-->\n", 1)[1]
    section = after_begin.split("<!-- settings:end -->")[0].strip()
    assert section == tables().strip()


def test_readme_gives_the_two_set_up_commands():
    text = README.read_text()
    assert "make run" in text and "make test" in text
