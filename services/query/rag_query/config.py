"""Settings of the query service (env prefix RAG_QUERY_)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from rag_common.settings import RedisSettings


class ApiKey(BaseModel):
    """What one API key stands for."""

    tenant: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    roles: list[Literal["reader", "writer", "admin", "operator"]] = Field(
        default_factory=lambda: ["reader"]
    )
    principal: str = ""


class QuerySettings(RedisSettings):
    """Who may call, where the internal services are, and what a question may ask for."""

    model_config = SettingsConfigDict(env_prefix="RAG_QUERY_", extra="ignore", frozen=True)

    port: int = Field(50051, ge=0, le=65535, description="Port to listen on.")
    require_client_certs: bool = Field(
        False,
        description="With TLS, also ask public callers for a client certificate; they prove "
        "who they are with API keys, so off by default.",
    )
    max_message_bytes: int = Field(
        8 * 1024 * 1024,
        ge=1024,
        description="Largest request message accepted on the public port, refused before "
        "it is read, so keyless callers cannot make the process parse huge messages.",
    )
    api_keys: dict[str, ApiKey] = Field(
        default_factory=dict,
        description='API keys as JSON: {"sha256:<hex>": {"tenant": "acme", "roles": '
        '["writer"]}} as `rag keys create` prints it (or the key itself in place of '
        '"sha256:<hex>", for development). '
        "Roles, within the key's tenant: reader (query), writer (also ingest and delete), "
        "admin (all of the tenant's calls); and operator: system-wide actions (maintenance).",
        repr=False,
    )

    @model_validator(mode="after")
    def _oidc_is_whole(self) -> QuerySettings:
        if self.oidc_issuer and not self.oidc_audience:
            raise ValueError("RAG_QUERY_OIDC_AUDIENCE is required with RAG_QUERY_OIDC_ISSUER")
        if self.oidc_issuer and bool(self.oidc_jwks_url) == bool(self.oidc_jwks_file):
            raise ValueError(
                "set one of RAG_QUERY_OIDC_JWKS_URL and RAG_QUERY_OIDC_JWKS_FILE with the issuer"
            )
        return self

    @field_validator("api_keys")
    @classmethod
    def _hashed_keys_are_whole(cls, keys: dict[str, ApiKey]) -> dict[str, ApiKey]:
        for key in keys:
            if key.startswith("sha256:") and not re.fullmatch(r"sha256:[0-9a-f]{64}", key):
                # The entry is not shown: it would be half a secret in a log.
                raise ValueError("a 'sha256:' key must be followed by 64 hex digits")
        return keys

    tenant_rate_limit: float = Field(
        0.0,
        ge=0,
        description="Calls a second one tenant may make, sustained (0: no limit; the "
        "production values set 200).",
    )
    tenant_burst: int = Field(400, ge=1, description="Calls a tenant may make at once above it.")
    principal_rate_limit: float = Field(
        0.0,
        ge=0,
        description="Calls a second one API key may make, sustained (0: no limit; the "
        "production values set 100).",
    )
    principal_burst: int = Field(200, ge=1, description="Calls a key may make at once above it.")
    tenant_max_concurrent: int = Field(
        32,
        ge=0,
        description="Calls one tenant may have running at once per replica (half the "
        "pipeline by default, so another tenant always finds room); 0: any.",
    )
    busy_shed_threshold: float = Field(
        0.3,
        ge=0,
        le=1,
        description="Share of its time this replica's event loop may be busy before calls of "
        "a tenant making more than an even share of the last second's calls are refused "
        "(TENANT_OVER_SHARE; more the busier, all of them from 0.2 above it); a lone tenant, "
        "or one asking a question at a time, never is. Above the autoscaler's target, so only "
        "a flood reaches it. 1: off.",
    )
    connection_max_streams: int = Field(
        32, ge=0, description="Streaming calls one connection may hold open; 0: any."
    )
    oidc_issuer: str = Field(
        "",
        description="Accept bearer JWTs from this OIDC issuer (its `iss`); empty: API keys only.",
    )
    oidc_audience: str = Field("", description="The `aud` those tokens must carry.")
    oidc_jwks_url: str = Field(
        "", description="The issuer's JWKS, fetched at start and when a new key id appears."
    )
    oidc_jwks_file: str = Field("", description="Or the JWKS as a file (read at start).")
    oidc_tenant_claim: str = Field("tenant", description="Claim that names the tenant.")
    oidc_roles_claim: str = Field("roles", description="Claim that lists the roles.")
    ingest_chars_per_s: float = Field(
        10_000.0,
        gt=0,
        description="Ingest speed assumed for a call that came without a deadline: it gets "
        "the call timeout plus its characters at this speed (1,000,000 characters: 130 s).",
    )
    conversion_memory_mb: int = Field(
        1024,
        ge=64,
        description="Memory one document's conversion (PDF, HTML, DOCX) may use in its "
        "sandboxed process; past it the document is refused as DOCUMENT_TOO_COMPLEX.",
    )
    conversion_cpu_s: float = Field(
        20.0, gt=0, description="CPU time one document's conversion may use."
    )
    conversion_timeout_s: float = Field(
        30.0, gt=0, description="Wall time one document's conversion may take."
    )
    conversion_max_chars: int = Field(
        1_000_000, ge=1, description="Most characters of text one converted document may give."
    )
    conversion_workers: int = Field(
        2, ge=1, description="Documents converted at once by one query process."
    )
    embedding_target: str = Field("127.0.0.1:50054", description="EmbeddingService address.")
    retrieval_target: str = Field("127.0.0.1:50052", description="RetrievalService address.")
    generation_target: str = Field("127.0.0.1:50053", description="GenerationService address.")
    max_question_chars: int = Field(2000, ge=1, description="Longest question accepted.")
    default_top_k: int = Field(5, ge=1, description="Sources retrieved when top_k is unset.")
    max_top_k: int = Field(50, ge=1, description="Most sources one question may ask for.")
    snippet_chars: int = Field(300, ge=20, description="Source text returned with an answer.")
    default_budget_ms: int = Field(
        5000, ge=100, le=60_000, description="Time budget of a question that sets none."
    )
    retrieval_budget_share: float = Field(
        0.5, gt=0, lt=1, description="Share of the budget for embedding plus retrieval."
    )
    min_generation_ms: int = Field(
        300, ge=0, description="Below this much time left, answer with sources, no LLM call."
    )
    max_pipeline_queries: int = Field(
        64,
        ge=1,
        description="Questions past the caches, running or waiting for a place; beyond it "
        "only cached answers are served (degraded: cached_only) and the rest are refused at "
        "once with RESOURCE_EXHAUSTED, instead of queueing.",
    )
    pipeline_concurrency: int = Field(
        16,
        ge=1,
        description="Questions going through embedding, retrieval and generation at once "
        "(plus, for each tenant with none running, one more); the others wait, each tenant "
        "taking its turn, for at most the retrieval share of their budget. While several "
        "tenants ask, each holds at most tenant_pipeline_share of them. More places let "
        "the embedder batch more questions together (16 against 8: 5 to 15 % more cache "
        "misses a second on 2 CPUs).",
    )
    tenant_pipeline_share: int = Field(
        0,
        ge=0,
        description="Places in the pipeline one tenant may hold while other tenants are "
        "asking too (within the last 5 s); alone, a tenant may use all of them. 0: one per "
        "two CPUs, so that one busy tenant's backlog leaves the others' questions most of "
        "the CPUs (each question runs in several processes).",
    )
    retrieval_cache_entries: int = Field(
        10_000, ge=1, description="Recent retrievals kept as a fallback for late retrieval."
    )
    retrieval_cache_ttl_s: float = Field(
        300.0, gt=0, description="How long a kept retrieval may stand in."
    )
    answer_cache_entries: int = Field(10_000, ge=1, description="Answers kept in process.")
    answer_cache_bytes: int = Field(
        256 * 1024**2, ge=1024, description="Most bytes of answers kept in process."
    )
    retrieval_cache_bytes: int = Field(
        64 * 1024**2, ge=1024, description="Most bytes of retrievals kept as a fallback."
    )
    semantic_cache_entries: int = Field(
        50_000,
        ge=1,
        description="Questions the semantic cache keeps over all tenants, versions and options "
        "(about 1.6 KB each); the least recently used scope goes first.",
    )
    answer_cache_ttl_s: float = Field(3600.0, gt=0, description="How long an answer is kept.")
    semantic_cache_threshold: float = Field(
        0.7,
        gt=0,
        le=1,
        description="Cosine similarity a question needs to reuse an answer "
        "(it must also pass the question guard); 1 turns the semantic cache off.",
    )
    breaker_consecutive_failures: int = Field(
        5, ge=1, description="Failures in a row that open the breaker of an internal service."
    )
    breaker_recovery_s: float = Field(
        5.0, gt=0, description="How long an open breaker fails calls at once before a probe."
    )
