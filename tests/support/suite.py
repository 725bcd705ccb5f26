"""The four services as real gRPC servers in the test process, wired as `rag up` wires them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from rag_common.embedding_client import EmbeddingClient
from rag_common.server import ServiceHost
from rag_embedding.servicer import servicers as embedding_servicers
from rag_generation.__main__ import build_generator
from rag_generation.config import GenerationSettings
from rag_generation.servicer import servicers as generation_servicers
from rag_query.__main__ import build_host
from rag_query.adapters.generation_client import GenerationClient
from rag_query.adapters.retrieval_client import RetrievalClient
from rag_query.config import QuerySettings
from rag_retrieval.__main__ import build_retriever, build_store
from rag_retrieval.backups import Backups
from rag_retrieval.config import RetrievalSettings
from rag_retrieval.retriever import Retriever
from rag_retrieval.servicer import servicers as retrieval_servicers
from tests.conftest import start_host
from tests.support.signed import credentials


@dataclass
class Suite:
    """The public host, a channel to it, and the retriever behind it."""

    host: ServiceHost
    channel: grpc.aio.Channel
    retriever: Retriever

    @property
    def address(self) -> str:
        """host:port of QueryService."""
        return f"127.0.0.1:{self.host.port}"


@contextlib.asynccontextmanager
async def in_process_suite(
    embedder, data_dir: Path, settings: QuerySettings, retrieval: RetrievalSettings | None = None
) -> AsyncIterator[Suite]:
    """Embedding, retrieval (embedded store in `data_dir`, `retrieval`'s settings otherwise),
    generation (extractive) and query with `settings`, each on its own port; stopped on exit."""
    hosts, clients = [], []
    embedding_host = await start_host(embedding_servicers(embedder))
    hosts.append(embedding_host)
    embedding = EmbeddingClient(
        f"127.0.0.1:{embedding_host.port}", timeout_s=30, credentials=credentials("retrieval")
    )
    retrieval_settings = (retrieval or RetrievalSettings()).model_copy(
        update={"data_dir": data_dir}
    )
    store = build_store(retrieval_settings)
    retriever = build_retriever(retrieval_settings, embedding, store)
    await retriever.start()
    backups = Backups(store, data_dir / "tmp", retrieval_settings.max_restore_bytes)
    hosts.append(await start_host(retrieval_servicers(retriever, backups)))
    generator = build_generator(GenerationSettings(providers=["extractive"]))
    await generator.start()
    hosts.append(await start_host(generation_servicers(generator)))
    retrieval = RetrievalClient(
        f"127.0.0.1:{hosts[1].port}", timeout_s=30, credentials=credentials("query")
    )
    generation = GenerationClient(
        f"127.0.0.1:{hosts[2].port}", timeout_s=30, credentials=credentials("query")
    )
    clients += [embedding, retrieval, generation]
    if "busy_shed_threshold" not in settings.model_fields_set:
        # All four services share this one event loop here, so its busy level measures them
        # all, not the query service: shedding on it only where a test asks for it.
        settings = settings.model_copy(update={"busy_shed_threshold": 1.0})
    host = build_host(settings, embedding, retrieval, generation)
    await host.start()
    await host.mark_serving()
    hosts.append(host)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{host.port}")
    try:
        yield Suite(host, channel, retriever)
    finally:
        await channel.close()
        for started in reversed(hosts):
            await started.stop(0)
        for client in clients:
            await client.close()
        await retriever.close()
