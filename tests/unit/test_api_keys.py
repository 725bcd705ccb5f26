"""API keys as `rag keys create` makes them: random, shown once, configured only as a digest."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from rag_cli import keys
from rag_common.errors import PermissionDenied, Unauthenticated
from rag_common.server.host import settings_errors
from rag_query.auth import Authenticator
from rag_query.config import QuerySettings

QUERY = "/rag.v1.QueryService/Query"
INGEST = "/rag.v1.DocumentService/IngestDocuments"


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def test_a_created_key_is_admitted_by_its_printed_entry_which_does_not_contain_it(monkeypatch):
    printed = keys.create("acme", ["reader"], "dashboard")
    key = printed.split("store it now): ")[1].split("\n")[0]
    entry = printed.strip().splitlines()[-1]
    assert key not in entry
    monkeypatch.setenv("RAG_QUERY_API_KEYS", entry)
    authenticate = Authenticator(QuerySettings().api_keys)
    identity = authenticate(QUERY, bearer(key))
    assert (identity.tenant, identity.principal) == ("acme", "dashboard")
    with pytest.raises(PermissionDenied):
        authenticate(INGEST, bearer(key))  # the roles it was created with, no more
    with pytest.raises(Unauthenticated):
        authenticate(QUERY, bearer(key[:-1]))


def test_keys_are_long_and_never_repeat():
    made = {keys.new_key() for _ in range(200)}
    assert len(made) == 200
    assert all(len(k) >= 40 and k.startswith("rag_") for k in made)


def test_plain_keys_still_work_for_development():
    authenticate = Authenticator(
        QuerySettings(api_keys={"dev-key": {"tenant": "default"}}).api_keys
    )
    assert authenticate(QUERY, bearer("dev-key")).tenant == "default"


def test_a_cut_digest_is_refused_at_start_without_being_shown(monkeypatch):
    cut = "sha256:" + "ab" * 20
    monkeypatch.setenv("RAG_QUERY_API_KEYS", json.dumps({cut: {"tenant": "acme"}}))
    with pytest.raises(ValidationError) as refused:
        QuerySettings()
    report = settings_errors(QuerySettings, refused.value)
    assert "RAG_QUERY_API_KEYS" in report and "64 hex digits" in report
    assert "ab" * 20 not in report


def test_compose_secrets_admit_their_key_and_settings_read_them_from_files(tmp_path, monkeypatch):
    """What deploy/compose.yaml mounts at /run/secrets: files named after the variables."""
    from scripts import compose_secrets

    folder = tmp_path / "secrets"
    compose_secrets.main(folder)
    first = {path.name: path.read_text() for path in folder.iterdir()}
    compose_secrets.main(folder)  # a second run keeps every secret
    assert {path.name: path.read_text() for path in folder.iterdir()} == first
    monkeypatch.delenv("RAG_IDENTITY_KEY", raising=False)
    monkeypatch.delenv("RAG_QUERY_API_KEYS", raising=False)
    settings = QuerySettings(_secrets_dir=folder)
    assert settings.identity_key.get_secret_value() == first["RAG_IDENTITY_KEY"]
    assert settings.redis_url == first["RAG_QUERY_REDIS_URL"]
    identity = Authenticator(settings.api_keys)(INGEST, bearer(first["api-key"]))
    assert identity.tenant == "default"
    monkeypatch.setenv("RAG_IDENTITY_KEY", "from-the-environment-" + "x" * 32)
    assert QuerySettings(_secrets_dir=folder).identity_key.get_secret_value().startswith("from")
