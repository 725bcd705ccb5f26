"""`rag keys create`: a new API key, shown once, and the settings entry that admits it."""

from __future__ import annotations

import hashlib
import json
import secrets

from rag_query.auth import HASHED_PREFIX

KEY_PREFIX = "rag_"  # recognisable in a leaked config or a secret scanner's rules


def new_key() -> str:
    """256 random bits, URL-safe: as hard to guess as the identity key itself."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def settings_entry(key: str, tenant: str, roles: list[str], principal: str) -> dict:
    """The RAG_QUERY_API_KEYS entry for `key`: its digest, never the key."""
    digest = hashlib.sha256(key.encode()).hexdigest()
    entry = {"tenant": tenant, "roles": roles}
    if principal:
        entry["principal"] = principal
    return {f"{HASHED_PREFIX}{digest}": entry}


def create(tenant: str, roles: list[str], principal: str) -> str:
    """What `rag keys create` prints."""
    key = new_key()
    entry = json.dumps(settings_entry(key, tenant, roles, principal))
    return (
        f"API key (shown once, store it now): {key}\n"
        f"add to RAG_QUERY_API_KEYS (a JSON object; merge with the keys already there):\n"
        f"{entry}\n"
    )
