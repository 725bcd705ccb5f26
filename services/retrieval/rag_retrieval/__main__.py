"""Start the retrieval service: `python -m rag_retrieval`."""

from __future__ import annotations

from rag_common.client.embedding import EmbeddingClient
from rag_common.health.details import Dependency, Health
from rag_common.health.probes import client_probe
from rag_common.security.credentials import service_credentials
from rag_common.server.host import ServiceHost, required_roles, run_service, service_main
from rag_retrieval.backups import Backups
from rag_retrieval.config import RetrievalSettings
from rag_retrieval.rerank import Reranker, RerankPolicy, RerankStage
from rag_retrieval.retriever import Retriever, SearchPolicy
from rag_retrieval.servicer import servicers
from rag_retrieval.store import VectorStore

# Bulk writes and backups take as long as their data does: not latency samples for the p95
# signal (the chart's latency alert leaves out the same methods).
UNTIMED = tuple(
    f"/rag.v1.RetrievalService/{method}"
    for method in (
        "UpsertDocuments",
        "DeleteDocuments",
        "CreateBackup",
        "RestoreBackup",
        "EraseTenant",
        "Reindex",
    )
)


def build_store(settings: RetrievalSettings) -> VectorStore:
    """The configured VectorStore adapter."""
    if settings.vector_store == "edge":
        from rag_retrieval.adapters.edge_store import EdgeStore

        return EdgeStore(settings.data_dir / "qdrant-edge", settings.vector_size)
    from rag_retrieval.adapters.qdrant_store import QdrantStore

    return QdrantStore(
        settings.collection,
        settings.vector_size,
        url=settings.qdrant_url,
        api_key=settings.qdrant_api_key.get_secret_value(),
        path=settings.qdrant_path or str(settings.data_dir / "qdrant"),
    )


def build_reranker(settings: RetrievalSettings) -> Reranker | None:
    """The configured reranker adapter, or None."""
    if settings.reranker == "none":
        return None
    from rag_retrieval.adapters import rerankers

    key = settings.reranker_api_key.get_secret_value()
    if settings.reranker == "tei":
        return rerankers.TeiReranker(settings.reranker_url, api_key=key)
    if settings.reranker == "cohere":
        return rerankers.CohereReranker(
            settings.reranker_url, model=settings.reranker_model, api_key=key
        )
    assert settings.reranker_path is not None  # the settings validator requires it
    return rerankers.CrossEncoderReranker(settings.reranker_path)


def build_retriever(settings: RetrievalSettings, embedder, store=None) -> Retriever:
    """A Retriever over `store` (default: the configured one), embedding through `embedder`."""
    reranker = build_reranker(settings)
    rerank = reranker and RerankStage(
        reranker,
        RerankPolicy(
            candidates=settings.rerank_candidates,
            budget_share=settings.rerank_budget_share,
            timeout_s=settings.rerank_timeout_s,
            max_concurrent=settings.rerank_max_concurrent,
        ),
    )
    return Retriever(
        store or build_store(settings),
        embedder,
        vector_size=settings.vector_size,
        chunk_size=settings.chunk_size,
        chunk_overlap=settings.chunk_overlap,
        max_document_chars=settings.max_document_chars,
        max_documents_per_call=settings.max_documents_per_call,
        default_top_k=settings.default_top_k,
        max_top_k=settings.max_top_k,
        embed_batch_size=settings.embed_batch_size,
        search=SearchPolicy(
            default_mode=settings.search_mode,
            fusion_candidates=settings.fusion_candidates,
            dense_weight=settings.dense_weight,
            lexical_weight=settings.lexical_weight,
            rrf_k=settings.rrf_k,
        ),
        rerank=rerank,
    )


async def serve(settings: RetrievalSettings) -> None:
    """Serve until SIGTERM."""
    credentials = service_credentials(settings, "retrieval")
    embedding = EmbeddingClient(
        settings.embedding_target, timeout_s=settings.call_timeout_s, credentials=credentials
    )
    store = build_store(settings)
    retriever = build_retriever(settings, embedding, store)
    backups = Backups(store, settings.data_dir / "backups-tmp", settings.max_restore_bytes)

    async def store_probe() -> tuple[Health, str]:
        await retriever.ping()
        return Health.HEALTHY, settings.vector_store

    dependencies = [
        Dependency("vector_store", store_probe, retriever.store_breaker),
        Dependency("embedding", client_probe(embedding), embedding.breaker),
        *_reranker_dependency(retriever),
    ]
    hosted = servicers(retriever, backups)
    host = ServiceHost(
        settings,
        hosted,
        resolve_identity=credentials.resolver(required_roles(hosted)),
        name="retrieval",
        dependencies=dependencies,
        untimed=UNTIMED,
        audited=UNTIMED,  # the same calls: writes, deletes, backups and restores
    )

    async def close() -> None:
        await retriever.close()
        await embedding.close()

    await run_service("retrieval", host, warm_up=retriever.start, close=close)


def _reranker_dependency(retriever: Retriever) -> list[Dependency]:
    """The reranker as a health dependency, judged by its breaker alone: probing it would
    cost a model call, and a failing reranker only degrades ordering."""
    stage = retriever.rerank_stage
    return [] if stage is None else [Dependency("reranker", breaker=stage.breaker)]


def main() -> None:
    """Read settings, configure logs and serve until SIGTERM."""
    service_main("retrieval", RetrievalSettings, serve)


if __name__ == "__main__":
    main()
