"""Fixtures shared by every tier: the real embedding model, servers on free ports, helpers."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence

import grpc
import pytest

from rag_common.server.host import ServiceHost, Servicer, required_roles
from rag_common.settings import ServiceSettings
from rag_common.status import error_info
from tests.support.signed import credentials

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
async def embedder():
    """The real all-MiniLM-L6-v2 embedder, loaded once for the whole run."""
    from rag_embedding.__main__ import build_embedder
    from rag_embedding.config import EmbeddingSettings

    embedder = build_embedder(EmbeddingSettings())
    await embedder.start()
    yield embedder
    await embedder.close()


async def start_host(
    servicers: Sequence[Servicer], settings: ServiceSettings | None = None, **kwargs
) -> ServiceHost:
    """A real gRPC server on 127.0.0.1 and a free port, SERVING.

    An internal service checks credentials made with the test key (tests/support/signed.py),
    as the one it is named after ("rag.v1.EmbeddingService" is "embedding").
    """
    settings = settings or ServiceSettings(port=0, grace_period_s=1.0)
    audience = servicers[0].service_name.removeprefix("rag.v1.").removesuffix("Service").lower()
    kwargs.setdefault("resolve_identity", credentials(audience).resolver(required_roles(servicers)))
    host = ServiceHost(settings, servicers, **kwargs)
    await host.start()
    await host.mark_serving()
    return host


@pytest.fixture
def expect_error():
    """Assert an awaitable fails with a status code, ErrorInfo reason and (optionally) field."""

    async def check(
        call, code: grpc.StatusCode, reason: str | None = None, field: str | None = None
    ):
        if hasattr(call, "__aiter__"):  # a server stream: the error comes while reading it
            call = collect(call)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        error = caught.value
        assert error.code() == code, error.details()
        info = error_info(error)
        assert info is not None, "no ErrorInfo in the status"
        if reason is not None:
            assert info.reason == reason
        if field is not None:
            assert info.metadata["field"] == field
        assert "Traceback" not in (error.details() or "")
        return error

    return check


async def collect(stream: AsyncIterator) -> list:
    """Every message of a server stream."""
    return [message async for message in stream]
