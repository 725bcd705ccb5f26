"""The four services as real gRPC servers in the test process, wired as `rag up` wires them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from rag.v1 import retrieval_service_pb2 as retrieval_pb
from rag.v1 import retrieval_service_pb2_grpc as retrieval_grpc
from rag_common.client.embedding import EmbeddingClient
from rag_common.security.credentials import Credentials
from rag_common.security.identity import Identity
from rag_common.server.host import ServiceHost
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
from tests.conftest import collect, start_host
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


@dataclass
class InternalServices:
    """Embedding, retrieval and generation as real gRPC servers, and the retriever."""

    addresses: dict[str, str]
    retriever: Retriever


@contextlib.asynccontextmanager
async def internal_services(
    embedder, data_dir: Path, retrieval: RetrievalSettings | None = None
) -> AsyncIterator[InternalServices]:
    """Embedding, retrieval (embedded store in `data_dir`, `retrieval`'s settings otherwise)
    and generation (extractive), each on its own port; stopped on exit."""
    embedding_host = await start_host(embedding_servicers(embedder))
    settings = (retrieval or RetrievalSettings()).model_copy(update={"data_dir": data_dir})
    store = build_store(settings)
    embedding = EmbeddingClient(
        f"127.0.0.1:{embedding_host.port}", timeout_s=30, credentials=credentials("retrieval")
    )
    retriever = build_retriever(settings, embedding, store)
    await retriever.start()
    backups = Backups(store, data_dir / "tmp", settings.max_restore_bytes)
    retrieval_host = await start_host(retrieval_servicers(retriever, backups))
    generator = build_generator(GenerationSettings(providers=["extractive"]))
    await generator.start()
    generation_host = await start_host(generation_servicers(generator))
    hosts = {
        "embedding": embedding_host,
        "retrieval": retrieval_host,
        "generation": generation_host,
    }
    try:
        yield InternalServices(
            {name: f"127.0.0.1:{host.port}" for name, host in hosts.items()}, retriever
        )
    finally:
        for host in reversed(hosts.values()):
            await host.stop(0)
        await retriever.close()
        await embedding.close()


async def upsert_directly(
    address: str, credentials: Credentials, identity: Identity, documents: list
) -> None:
    """Store documents through a retrieval replica's own port, as `identity` (each embedded
    replica has its own store, so tests with several fill each one)."""
    metadata = credentials.metadata(
        "retrieval", identity, method="/rag.v1.RetrievalService/UpsertDocuments"
    )
    async with grpc.aio.insecure_channel(address) as channel:
        await collect(
            retrieval_grpc.RetrievalServiceStub(channel).UpsertDocuments(
                retrieval_pb.UpsertDocumentsRequest(documents=documents),
                metadata=metadata,
                timeout=60,
            )
        )


@contextlib.asynccontextmanager
async def in_process_suite(
    embedder, data_dir: Path, settings: QuerySettings, retrieval: RetrievalSettings | None = None
) -> AsyncIterator[Suite]:
    """Embedding, retrieval (embedded store in `data_dir`, `retrieval`'s settings otherwise),
    generation (extractive) and query with `settings`, each on its own port; stopped on exit."""
    async with internal_services(embedder, data_dir, retrieval) as internal:
        clients = [
            kind(internal.addresses[name], timeout_s=30, credentials=credentials("query"))
            for kind, name in (
                (EmbeddingClient, "embedding"),
                (RetrievalClient, "retrieval"),
                (GenerationClient, "generation"),
            )
        ]
        if "busy_shed_threshold" not in settings.model_fields_set:
            # All four services share this one event loop here, so its busy level measures
            # them all, not the query service: shedding on it only where a test asks for it.
            settings = settings.model_copy(update={"busy_shed_threshold": 1.0})
        host = build_host(settings, *clients)
        await host.start()
        await host.mark_serving()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{host.port}")
        try:
            yield Suite(host, channel, internal.retriever)
        finally:
            await channel.close()
            await host.stop(0)
            for client in clients:
                await client.close()
