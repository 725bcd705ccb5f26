"""Start the embedding service: `python -m rag_embedding`."""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from pathlib import Path

from rag_common.breaker import CircuitBreaker
from rag_common.cache.local import LocalTTLCache, byte_length
from rag_common.cache.tiered import RedisLayer, TieredCache
from rag_common.health.details import Dependency, Health
from rag_common.health.probes import redis_probe
from rag_common.health.process import available_cpus
from rag_common.security.credentials import service_credentials
from rag_common.server.host import ServiceHost, run_service, service_main
from rag_common.shared_redis import redis_from_settings
from rag_embedding.config import EmbeddingSettings
from rag_embedding.embedder import Embedder, EncoderModel
from rag_embedding.metrics import embedding_families
from rag_embedding.servicer import servicers

log = logging.getLogger(__name__)


def build_embedder(settings: EmbeddingSettings) -> Embedder:
    """An Embedder that will load the configured model, on the configured backend, on start()."""
    return Embedder(
        model_loader(settings),
        max_texts=settings.max_texts,
        max_text_chars=settings.max_text_chars,
        max_batch=settings.max_batch,
        max_document_batch=settings.max_document_batch,
        max_wait_s=settings.max_wait_ms / 1000,
        quiet_s=settings.batch_quiet_ms / 1000,
        bulk_niceness=settings.bulk_niceness,
        cache=_cache(settings),
    )


def model_loader(settings: EmbeddingSettings) -> Callable[[], EncoderModel]:
    """What loads the model on the configured backend (called off the event loop)."""
    if settings.backend in ("openai", "tei"):
        from rag_embedding.adapters.remote import OpenAIEmbeddings, TeiEmbeddings

        remote = OpenAIEmbeddings if settings.backend == "openai" else TeiEmbeddings
        return functools.partial(
            remote,
            settings.remote_url,
            model=settings.model,
            api_key=settings.remote_api_key.get_secret_value(),
            timeout_s=settings.remote_timeout_s,
            attempts=settings.remote_attempts,
            breaker=CircuitBreaker("embedding-server"),  # one for both lanes
        )
    if settings.backend == "torch":
        from rag_embedding.adapters.sentence_transformer import SentenceTransformerModel

        return functools.partial(
            SentenceTransformerModel,
            settings.model,
            device=settings.device,
            batch_size=settings.batch_size,
        )
    from rag_embedding.adapters.onnx_model import OnnxModel

    cache_dir = settings.onnx_cache_dir or Path.home() / ".cache" / "rag" / "onnx"
    return functools.partial(
        OnnxModel,
        settings.model,
        batch_size=settings.batch_size,
        int8=settings.backend == "onnx-int8",
        cache_dir=Path(cache_dir),
        threads=settings.threads or math.ceil(available_cpus()),
    )


def _cache(settings: EmbeddingSettings) -> TieredCache:
    remote = None
    if (client := redis_from_settings(settings)) is not None:
        remote = RedisLayer(client, "embeddings", ttl_s=settings.redis_ttl_s)
    local = LocalTTLCache(
        settings.cache_entries,
        settings.cache_ttl_s,
        max_bytes=settings.cache_bytes,
        size_of=byte_length,
    )
    return TieredCache(local, remote)


async def serve(settings: EmbeddingSettings) -> None:
    """Load the model, then serve until SIGTERM; the port opens once the model is loaded."""
    embedder = build_embedder(settings)

    async def model_probe() -> tuple[Health, str]:
        if embedder.ready:
            return Health.HEALTHY, embedder.info.model
        return Health.UNHEALTHY, "loading"

    dependencies = [Dependency("model", model_probe)]
    remote = embedder.cache.remote if embedder.cache else None
    if remote is not None:
        dependencies.append(Dependency("redis", redis_probe(remote), remote.breaker))
    host = ServiceHost(
        settings,
        servicers(embedder),
        resolve_identity=service_credentials(settings, "embedding").resolver(),
        name="embedding",
        dependencies=dependencies,
    )
    host.metrics.read_at_scrape(lambda: embedding_families(embedder))

    async def warm_up() -> None:
        if remote is not None and not await remote.ping():
            log.warning("redis not reachable at start; caching in-process until it is")

    async def close() -> None:
        await embedder.close()
        if remote is not None:
            await remote.close()

    await run_service("embedding", host, load=embedder.start, warm_up=warm_up, close=close)


def main() -> None:
    """Read settings, configure logs and serve until SIGTERM."""
    service_main("embedding", EmbeddingSettings, serve)


if __name__ == "__main__":
    main()
