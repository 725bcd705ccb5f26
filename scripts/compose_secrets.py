"""Make the secrets deploy/compose.yaml mounts, once: the identity key and a first API key.

`python -m scripts.compose_secrets [FOLDER]` writes, if they are not there yet,
  RAG_IDENTITY_KEY     a new random key every service signs internal calls with
  RAG_QUERY_API_KEYS   the settings entry (a digest) of one admin key of tenant `default`
  api-key              that key itself, for the CLI: RAG_API_KEY=$(cat FOLDER/api-key)
  redis.conf           Redis's password (requirepass), and the services' Redis URLs with
                       it: RAG_QUERY_REDIS_URL, RAG_EMBEDDING_REDIS_URL, RAG_GENERATION_REDIS_URL
Files that exist are kept, so running it again changes nothing. The folder is the owner's
only; the files inside are readable by the containers' user (secrets are bind-mounted).
"""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path

from rag_cli.keys import new_key, settings_entry

DEFAULT_FOLDER = Path(__file__).resolve().parents[1] / "deploy" / "secrets"


def write_once(path: Path, text: str) -> None:
    """Write `text` to `path` unless the file exists."""
    if not path.exists():
        path.write_text(text)
        path.chmod(0o644)


def main(folder: Path = DEFAULT_FOLDER) -> None:
    """Make the folder's secrets that are missing."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    write_once(folder / "RAG_IDENTITY_KEY", secrets.token_urlsafe(48))
    if not (folder / "redis.conf").exists():
        password = secrets.token_urlsafe(32)
        for database, service in enumerate(("QUERY", "EMBEDDING", "GENERATION")):
            (folder / f"RAG_{service}_REDIS_URL").unlink(missing_ok=True)
            write_once(
                folder / f"RAG_{service}_REDIS_URL", f"redis://:{password}@redis:6379/{database}"
            )
        write_once(folder / "redis.conf", f"requirepass {password}\n")
    if not (folder / "api-key").exists():
        key = new_key()
        entry = settings_entry(key, "default", ["admin"], "compose")
        (folder / "RAG_QUERY_API_KEYS").unlink(missing_ok=True)
        write_once(folder / "RAG_QUERY_API_KEYS", json.dumps(entry))
        write_once(folder / "api-key", key)
    print(folder)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_FOLDER)
