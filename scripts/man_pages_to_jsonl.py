"""Write the eval corpus: manual pages of everyday command-line tools as JSONL documents.

    python scripts/man_pages_to_jsonl.py > bench/data/eval/documents.jsonl

Rendered by the machine's `man` at a fixed width, so the committed file is what any Debian
machine with the same packages gives. Each page keeps its own licence (see
/usr/share/doc/<package>/copyright).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PAGES = """
ls cp mv rm mkdir ln chmod chown chgrp df du sort uniq cut tr head tail wc cat tee split
date touch stat xargs grep tar gzip scp kill env nohup timeout watch diff comm join paste
seq shuf base64 sha256sum install readlink realpath basename truncate dd nice renice id nl
fold fmt column od strings nproc uname free uptime lsblk ip ss journalctl git-stash
git-reset git-revert git-bisect git-cherry-pick git-blame git-tag git-clean git-worktree
""".split()


def render(page: str) -> tuple[str, str]:
    """(path, text) of a page from section 1 or 8."""
    for section in ("1", "8"):
        path = Path(f"/usr/share/man/man{section}/{page}.{section}.gz")
        if path.exists():
            env = dict(os.environ, MANWIDTH="100", LC_ALL="C.UTF-8")
            shown = subprocess.run(
                ["man", "--no-hyphenation", "--no-justification", "-l", str(path)],
                capture_output=True,
                text=True,
                check=True,
                env=env,
            ).stdout
            plain = subprocess.run(["col", "-b"], input=shown, capture_output=True, text=True)
            return str(path), plain.stdout.strip()
    raise FileNotFoundError(page)


def main() -> None:
    """Print one JSON document per page."""
    for page in PAGES:
        source, text = render(page)
        document = {"id": page, "title": f"{page}(1)", "source": source, "text": text}
        sys.stdout.write(json.dumps(document, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
