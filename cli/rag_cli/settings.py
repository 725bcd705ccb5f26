"""Where the CLI sends its calls and as whom: read from the environment (RAG_*)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from rag_cli.launcher import DEV_API_KEY


class CliSettings(BaseSettings):
    """Where the CLI sends calls and with which key (env RAG_TARGET, RAG_API_KEY)."""

    model_config = SettingsConfigDict(env_prefix="RAG_", extra="ignore")

    target: str = Field("127.0.0.1:50051", description="QueryService address.")
    api_key: str = Field(DEV_API_KEY, description="API key sent as a Bearer token.")
    data_dir: Path = Field(Path(".rag-data"), description="Where `rag up` keeps data and logs.")
    redis_url: str = Field(
        "",
        validation_alias="RAG_QUERY_REDIS_URL",
        description="The query service's Redis, where corpus versions live.",
    )
    identity_key: str = Field(
        "",
        validation_alias="RAG_IDENTITY_KEY",
        description="The suite's key for internal calls (default: the one `rag up` made).",
        repr=False,
    )
