"""Start the embedding service: `python -m rag_embedding`."""

from __future__ import annotations

import asyncio
import functools

from rag_common import logs
from rag_common.health_details import Dependency, Health, HealthChecker
from rag_common.health_servicer import health_details_servicer
from rag_common.server import ServiceHost, run_service
from rag_embedding.config import EmbeddingSettings
from rag_embedding.embedder import Embedder
from rag_embedding.servicer import servicers


def build_embedder(settings: EmbeddingSettings) -> Embedder:
    """An Embedder that will load the configured sentence-transformers model on start()."""
    from rag_embedding.adapters.sentence_transformer import SentenceTransformerModel

    load = functools.partial(
        SentenceTransformerModel,
        settings.model,
        device=settings.device,
        batch_size=settings.batch_size,
    )
    return Embedder(
        load,
        max_texts=settings.max_texts,
        max_text_chars=settings.max_text_chars,
        max_batch=settings.max_batch,
        max_wait_s=settings.max_wait_ms / 1000,
    )


async def serve(settings: EmbeddingSettings) -> None:
    """Serve until SIGTERM; the port answers health (NOT_SERVING) while the model loads."""
    embedder = build_embedder(settings)

    async def model_probe() -> tuple[Health, str]:
        if embedder.ready:
            return Health.HEALTHY, embedder.info.model
        return Health.UNHEALTHY, "loading"

    checker = HealthChecker("embedding", [Dependency("model", model_probe)])
    host = ServiceHost(settings, [*servicers(embedder), health_details_servicer(checker)])

    await run_service("embedding", host, warm_up=embedder.start, close=embedder.close)


def main() -> None:
    """Read settings, configure logs and serve until SIGTERM."""
    settings = EmbeddingSettings()
    logs.configure("embedding", settings.log_level)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
