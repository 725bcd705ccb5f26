"""Settings of the retrieval service (env prefix RAG_RETRIEVAL_)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from rag_common.settings import ServiceSettings, default_data_dir


class RetrievalSettings(ServiceSettings):
    """Where chunks are stored, how documents are chunked, and what requests may ask for."""

    model_config = SettingsConfigDict(env_prefix="RAG_RETRIEVAL_", extra="ignore", frozen=True)

    port: int = Field(50052, ge=0, le=65535, description="Port to listen on.")
    embedding_target: str = Field(
        "127.0.0.1:50054", description="EmbeddingService address(es) or dns:/// target."
    )
    vector_store: Literal["edge", "qdrant"] = Field(
        "edge",
        description="'edge': Qdrant's engine in-process, on disk under data_dir. 'qdrant': "
        "qdrant-client, to qdrant_url, or in local mode at qdrant_path when no URL is set.",
    )
    data_dir: Path = Field(default_factory=default_data_dir, description="Embedded store folder.")
    qdrant_url: str = Field("", description="Qdrant server URL, e.g. http://qdrant:6333.")
    qdrant_api_key: SecretStr = Field(SecretStr(""), description="Qdrant server API key.")
    qdrant_path: str = Field(
        "", description="qdrant-client local mode folder, or ':memory:'; empty: data_dir/qdrant."
    )
    collection: str = Field("rag_chunks", description="Collection holding every tenant's chunks.")
    vector_size: int = Field(384, ge=1, description="Dimension of the embedding model's vectors.")
    chunk_size: int = Field(800, ge=50, description="Most characters in one chunk.")
    chunk_overlap: int = Field(120, ge=0, description="Characters repeated between chunks.")
    max_document_chars: int = Field(1_000_000, ge=1, description="Most characters per document.")
    max_documents_per_call: int = Field(100, ge=1, description="Most documents per upsert.")
    max_restore_bytes: int = Field(
        10 * 1024**3, ge=1, description="Largest backup archive RestoreBackup accepts."
    )
    default_top_k: int = Field(8, ge=1, description="Chunks returned when top_k is unset.")
    max_top_k: int = Field(100, ge=1, description="Most chunks one request may ask for.")
    embed_batch_size: int = Field(64, ge=1, description="Chunks sent per embedding call.")
    search_mode: Literal["dense", "hybrid"] = Field(
        "dense",
        description="Default search when a request names none: 'dense' (embeddings only) or "
        "'hybrid' (embeddings and a BM25 index, fused by reciprocal rank).",
    )
    fusion_candidates: int = Field(
        50, ge=1, le=1000, description="Chunks each index contributes to hybrid fusion."
    )
    dense_weight: float = Field(1.0, ge=0, description="Weight of the dense ranking in fusion.")
    lexical_weight: float = Field(0.2, ge=0, description="Weight of the BM25 ranking in fusion.")
    rrf_k: int = Field(10, ge=1, description="Reciprocal rank fusion's k: 1/(k + rank).")
    reranker: Literal["none", "tei", "cohere", "cross-encoder"] = Field(
        "none",
        description="Rerank stage: 'tei' (text-embeddings-inference /rerank), 'cohere' "
        "(/v1/rerank: Cohere, vLLM, Jina, Infinity), 'cross-encoder' (a local "
        "sentence-transformers model at reranker_path), or 'none'.",
    )
    reranker_url: str = Field("", description="Rerank server base URL, e.g. http://tei:8080.")
    reranker_api_key: SecretStr = Field(SecretStr(""), description="Rerank server bearer key.")
    reranker_model: str = Field("", description="Model name sent to a /v1/rerank server.")
    reranker_path: Path | None = Field(None, description="Local CrossEncoder model folder.")
    rerank_candidates: int = Field(
        30, ge=1, le=200, description="Fused chunks the reranker scores per search."
    )
    rerank_budget_share: float = Field(
        0.5, gt=0, le=1, description="Share of a search's remaining time the reranker may take."
    )
    rerank_timeout_s: float = Field(2.0, gt=0, description="Most seconds one rerank may take.")
    rerank_max_concurrent: int = Field(
        8, ge=1, description="Reranks in flight before searches skip the stage (no_rerank)."
    )

    @model_validator(mode="after")
    def _overlap_below_size(self) -> RetrievalSettings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError("chunk_overlap must be smaller than chunk_size")
        return self

    @model_validator(mode="after")
    def _reranker_located(self) -> RetrievalSettings:
        if self.reranker in ("tei", "cohere") and not self.reranker_url:
            raise ValueError(f"reranker {self.reranker!r} needs reranker_url")
        if self.reranker == "cohere" and not self.reranker_model:
            raise ValueError("reranker 'cohere' needs reranker_model")
        if self.reranker == "cross-encoder" and not self.reranker_path:
            raise ValueError("reranker 'cross-encoder' needs reranker_path")
        return self
