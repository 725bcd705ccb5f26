"""Print every stable error reason as docs/failures.md's Markdown table (status, reason, meaning).

`python -m scripts.error_table` prints what docs/failures.md's errors section must contain;
`--write` puts it there. A unit test fails when the two drift apart.
"""

from __future__ import annotations

import sys

from rag_common.reasons import Reason
from scripts.doc_sections import DOCS, replace_section


def table() -> str:
    """The Markdown of the errors section."""
    lines = ["| status | `ErrorInfo.reason` | what happened |", "| --- | --- | --- |"]
    lines += [f"| `{r.status}` | `{r.value}` | {r.meaning} |" for r in Reason]
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        replace_section("errors", table(), DOCS / "failures.md")
    else:
        print(table())
