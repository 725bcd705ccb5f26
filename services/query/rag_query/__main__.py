"""Start the public query and document services: `python -m rag_query`."""

from __future__ import annotations

import asyncio
import logging

from rag_common import logs
from rag_common.embedding_client import EmbeddingClient
from rag_common.server import ServiceHost, run_service
from rag_query.adapters.generation_client import GenerationClient
from rag_query.adapters.retrieval_client import RetrievalClient
from rag_query.auth import Authenticator
from rag_query.config import QuerySettings
from rag_query.engine import QueryEngine
from rag_query.servicer import servicers

log = logging.getLogger(__name__)


async def serve(settings: QuerySettings) -> None:
    """Serve until SIGTERM."""
    if not settings.api_keys:
        log.warning("no API keys configured: every call will be rejected (RAG_QUERY_API_KEYS)")
    timeout = settings.call_timeout_s
    embedding = EmbeddingClient(settings.embedding_target, timeout_s=timeout)
    retrieval = RetrievalClient(settings.retrieval_target, timeout_s=timeout)
    generation = GenerationClient(settings.generation_target, timeout_s=timeout)
    engine = QueryEngine(
        embedding,
        retrieval,
        generation,
        max_question_chars=settings.max_question_chars,
        default_top_k=settings.default_top_k,
        max_top_k=settings.max_top_k,
    )
    host = ServiceHost(
        settings,
        servicers(engine, retrieval, snippet_chars=settings.snippet_chars),
        resolve_identity=Authenticator(settings.api_keys),
    )

    async def close() -> None:
        for client in (embedding, retrieval, generation):
            await client.close()

    await run_service("query", host, close=close)


def main() -> None:
    """Read settings, configure logs and serve until SIGTERM."""
    settings = QuerySettings()
    logs.configure("query", settings.log_level)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
