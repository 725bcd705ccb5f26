"""Start the public query, document and admin services: `python -m rag_query`."""

from __future__ import annotations

import logging

from rag_common.breaker import BreakerPolicy, BreakerState, CircuitBreaker
from rag_common.cache.local import LocalTTLCache, byte_length
from rag_common.cache.tiered import RedisLayer, TieredCache
from rag_common.client.embedding import EmbeddingClient
from rag_common.health.details import Dependency
from rag_common.health.probes import client_probe, redis_probe
from rag_common.health.process import available_cpus
from rag_common.security.credentials import service_credentials
from rag_common.server.busy_shedding import BusyShedding
from rag_common.server.fair_use import FairUse, FairUsePolicy, SharedBuckets
from rag_common.server.host import ServiceHost, run_service, service_main
from rag_common.shared_redis import redis_from_settings
from rag_query.adapters.generation_client import GenerationClient
from rag_query.adapters.retrieval_client import RetrievalClient
from rag_query.answer_cache import AnswerCache
from rag_query.auth import Authenticator
from rag_query.coalescing import CoalescingEmbedder, CoalescingGenerator, CoalescingRetriever
from rag_query.config import QuerySettings
from rag_query.conversion.sandbox import Limits, Sandbox
from rag_query.corpus import CorpusVersions
from rag_query.documents import Documents
from rag_query.drain import Drain
from rag_query.engine import QueryEngine, QueryPolicy, sources_size
from rag_query.maintenance import Maintenance
from rag_query.metrics import query_families
from rag_query.oidc import OidcConfig, OidcVerifier
from rag_query.semantic_cache import SemanticCache, SharedEntries
from rag_query.servicer import servicers

log = logging.getLogger(__name__)

# Ingest and admin calls take as long as their documents do: not latency samples for the
# p95 signal (the chart's latency alert leaves out the same methods).
# Writes and admin calls: long by nature (not latency samples), and each one audited.
UNTIMED = (
    "/rag.v1.DocumentService/IngestDocuments",
    "/rag.v1.DocumentService/DeleteDocuments",
    "/rag.v1.AdminService/",
)


def oidc_verifier(settings: QuerySettings) -> OidcVerifier | None:
    """The JWT verifier the settings ask for, or None (API keys only)."""
    if not settings.oidc_issuer:
        return None
    return OidcVerifier(
        OidcConfig(
            issuer=settings.oidc_issuer,
            audience=settings.oidc_audience,
            jwks_file=settings.oidc_jwks_file,
            jwks_url=settings.oidc_jwks_url,
            tenant_claim=settings.oidc_tenant_claim,
            roles_claim=settings.oidc_roles_claim,
        )
    )


def build_host(
    settings: QuerySettings,
    embedding: EmbeddingClient,
    retrieval: RetrievalClient,
    generation: GenerationClient,
    drain: Drain | None = None,
) -> ServiceHost:
    """The public server over the three internal clients, wired as `serve` runs it."""
    redis = redis_from_settings(settings)
    maintenance = Maintenance(redis)
    remote = RedisLayer(redis, "answers", ttl_s=settings.answer_cache_ttl_s) if redis else None
    answers = AnswerCache(
        TieredCache(
            LocalTTLCache(
                settings.answer_cache_entries,
                settings.answer_cache_ttl_s,
                max_bytes=settings.answer_cache_bytes,
                size_of=byte_length,
            ),
            remote,
        )
    )
    versions = CorpusVersions(redis, remote.breaker if remote else None)
    engine = QueryEngine(
        CoalescingEmbedder(embedding),
        CoalescingRetriever(retrieval),
        CoalescingGenerator(generation),
        QueryPolicy(
            max_question_chars=settings.max_question_chars,
            default_top_k=settings.default_top_k,
            max_top_k=settings.max_top_k,
            default_budget_s=settings.default_budget_ms / 1000,
            retrieval_share=settings.retrieval_budget_share,
            min_generation_s=settings.min_generation_ms / 1000,
            max_pipeline_queries=settings.max_pipeline_queries,
            pipeline_concurrency=settings.pipeline_concurrency,
            tenant_share_when_shared=settings.tenant_pipeline_share
            or max(1, int(available_cpus()) // 2),
        ),
        maintenance=maintenance,
        retrieval_cache=LocalTTLCache(
            settings.retrieval_cache_entries,
            settings.retrieval_cache_ttl_s,
            max_bytes=settings.retrieval_cache_bytes,
            size_of=sources_size,
        ),
        answers=answers,
        versions=versions,
        semantic=SemanticCache(
            threshold=settings.semantic_cache_threshold,
            ttl_s=settings.answer_cache_ttl_s,
            max_entries=settings.semantic_cache_entries,
            shared=SharedEntries(redis) if redis else None,
        ),
        drain=drain,
        dependencies_down=lambda: all(
            client.breaker.state is BreakerState.OPEN for client in (retrieval, generation)
        ),
    )
    clients = (embedding, retrieval, generation)
    dependencies = [Dependency(c.dependency, client_probe(c), c.breaker) for c in clients]
    if remote:
        dependencies.append(Dependency("redis", redis_probe(remote), remote.breaker))
    host = ServiceHost(
        settings,
        servicers(
            engine,
            Documents(
                retrieval,
                maintenance,
                versions,
                forget_cached=engine.forget_tenant,
                sandbox=Sandbox(
                    Limits(
                        memory_bytes=settings.conversion_memory_mb * 1024 * 1024,
                        cpu_s=settings.conversion_cpu_s,
                        wall_s=settings.conversion_timeout_s,
                        max_chars=settings.conversion_max_chars,
                        concurrent=settings.conversion_workers,
                    )
                ),
                chars_per_s=settings.ingest_chars_per_s,
                base_timeout_s=settings.call_timeout_s,
            ),
            maintenance,
            snippet_chars=settings.snippet_chars,
        ),
        resolve_identity=Authenticator(settings.api_keys, oidc_verifier(settings)),
        name="query",
        dependencies=dependencies,
        unavailable=maintenance.reason,
        cache_lookups=engine.stats.hits_and_lookups,
        untimed=UNTIMED,
        audited=UNTIMED,  # the same calls: every write, delete and admin action
        fair_use=FairUse(
            FairUsePolicy(
                tenant_rate=settings.tenant_rate_limit,
                tenant_burst=settings.tenant_burst,
                principal_rate=settings.principal_rate_limit,
                principal_burst=settings.principal_burst,
                tenant_concurrency=settings.tenant_max_concurrent,
                connection_streams=settings.connection_max_streams,
            ),
            SharedBuckets(redis, breaker=remote.breaker) if redis else None,
            shedding=(
                BusyShedding(settings.busy_shed_threshold)
                if settings.busy_shed_threshold < 1
                else None  # off: not even its per-call counting
            ),
        ),
    )
    host.metrics.read_at_scrape(
        lambda: query_families(engine.stats, lambda: engine.pipeline_in_flight)
    )

    async def follow_maintenance(enabled: bool) -> None:
        await (host.mark_not_serving() if enabled else host.mark_serving())

    maintenance.on_change = follow_maintenance
    host.add_companion(maintenance.start, maintenance.close)
    return host


async def serve(settings: QuerySettings) -> None:
    """Serve until SIGTERM."""
    if not settings.api_keys:
        log.warning("no API keys configured: every call will be rejected (RAG_QUERY_API_KEYS)")
    timeout = settings.call_timeout_s
    policy = BreakerPolicy(
        consecutive_failures=settings.breaker_consecutive_failures,
        recovery_s=settings.breaker_recovery_s,
    )
    signed = {"timeout_s": timeout, "credentials": service_credentials(settings, "query")}
    embedding = EmbeddingClient(
        settings.embedding_target, breaker=CircuitBreaker("embedding", policy), **signed
    )
    retrieval = RetrievalClient(
        settings.retrieval_target, breaker=CircuitBreaker("retrieval", policy), **signed
    )
    generation = GenerationClient(
        settings.generation_target, breaker=CircuitBreaker("generation", policy), **signed
    )
    drain = Drain()
    host = build_host(settings, embedding, retrieval, generation, drain)

    async def close() -> None:
        for client in (embedding, retrieval, generation):
            await client.close()

    await run_service("query", host, draining=drain.begin, close=close)


def main() -> None:
    """Read settings, configure logs and serve until SIGTERM."""
    service_main("query", QuerySettings, serve)


if __name__ == "__main__":
    main()
