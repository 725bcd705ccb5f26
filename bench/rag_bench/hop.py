"""A hop with no work in it: the suite's own server and client around an embedder that
answers at once.

Beside the bare echo server (echo.py) it shows what the suite's plumbing adds to each round
trip: the signed credential made and checked, metrics, the request scope and deadline, the
breaker, replica choice and hedging. The echo is what gRPC itself costs; the difference is
the part of each hop the suite's own code could still cut.
"""

from __future__ import annotations

import asyncio
import secrets
import sys

from rag_bench.stats import Run
from rag_cli.launcher import free_port
from rag_common.client.embedding import EmbeddingClient
from rag_common.security.credentials import Credentials
from rag_common.server.host import ServiceHost
from rag_common.settings import ServiceSettings
from rag_embedding.servicer import servicers

NAME = "suite plumbing (yardstick)"
_QUESTION = "How do I rotate the identity key without a failed call?"


class _Info:
    model = "instant"
    dimension = 384


class InstantEmbedder:
    """Answers every text at once with the same vector, of the real model's size."""

    info = _Info()
    _vector = [0.05] * 384

    async def embed(self, texts: list[str], purpose: str) -> list[list[float]]:
        """The same vector for every text."""
        return [self._vector for _ in texts]


def main() -> None:
    """`python -m rag_bench.hop PORT KEY`: an embedding service host, signed with KEY."""
    port, key = int(sys.argv[1]), sys.argv[2]

    async def serve() -> None:
        host = ServiceHost(
            ServiceSettings(port=port, grace_period_s=1.0),
            servicers(InstantEmbedder()),
            resolve_identity=Credentials(key, "embedding").resolver(),
        )
        await host.start()
        await host.mark_serving()
        await asyncio.Event().wait()

    asyncio.run(serve())


async def plumbing_run(requests: int, drive) -> Run:
    """`requests` Embed calls one at a time through the suite's client and server."""
    port, key = free_port(), secrets.token_urlsafe(32)
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rag_bench.hop", str(port), key
    )
    client = EmbeddingClient(
        f"127.0.0.1:{port}", timeout_s=10, credentials=Credentials(key, "query")
    )
    try:
        await client.replicas.all[0].channel.channel_ready()

        async def ask(text: str) -> dict:
            await client.embed([text], "query")
            return {"embed": 0.0, "retrieve": 0.0, "generate": 0.0}

        await drive("warm-up", 1, [_QUESTION] * 50, ask)
        return await drive(NAME, 1, [_QUESTION] * requests, ask)
    finally:
        await client.close()
        server.terminate()
        await server.wait()


if __name__ == "__main__":
    main()
