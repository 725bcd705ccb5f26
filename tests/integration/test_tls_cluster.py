"""The four services as processes with TLS on every port and mTLS between them."""

from __future__ import annotations

import json

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rag.v1 import common_pb2
from rag.v1 import document_service_pb2 as doc_pb
from rag.v1 import document_service_pb2_grpc as doc_grpc
from rag.v1 import query_service_pb2 as pb
from rag.v1 import query_service_pb2_grpc as pb_grpc
from rag_cli.launcher import SERVICES, LocalCluster, health_status

pytestmark = pytest.mark.slow

KEY = "tls-key"
AUTH = [("authorization", f"Bearer {KEY}")]


@pytest.fixture(scope="module")
async def secured(tmp_path_factory):
    cluster = LocalCluster.on_free_ports(tmp_path_factory.mktemp("tls"))
    cluster.env.update(
        {
            "RAG_QUERY_API_KEYS": json.dumps({KEY: {"tenant": "acme", "roles": ["writer"]}}),
            "RAG_GENERATION_PROVIDERS": '["extractive"]',
        }
    )
    client = cluster.use_tls()
    cluster.start()
    try:
        await cluster.wait_serving(within_s=240)  # its health checks, over mTLS too
        yield cluster, client
    finally:
        cluster.stop()


async def test_a_question_is_answered_with_every_hop_encrypted(secured):
    cluster, client = secured
    # A public caller needs only the CA: it proves who it is with its API key.
    ca_only = grpc.ssl_channel_credentials(root_certificates=client.ca)
    async with grpc.aio.secure_channel(cluster.address("query"), ca_only) as channel:
        documents = [common_pb2.Document(id="vault", text="The vault opens at nine sharp.")]
        await doc_grpc.DocumentServiceStub(channel).IngestDocuments(
            doc_pb.IngestDocumentsRequest(documents=documents), metadata=AUTH, timeout=60
        )
        reply = await pb_grpc.QueryServiceStub(channel).Query(
            pb.QueryRequest(question="When does the vault open?"), metadata=AUTH, timeout=30
        )
    assert reply.sources[0].document_id == "vault"  # embedding, retrieval, generation: mTLS
    async with grpc.aio.insecure_channel(cluster.address("query")) as plain:
        with pytest.raises(grpc.aio.AioRpcError):
            await pb_grpc.QueryServiceStub(plain).Query(
                pb.QueryRequest(question="vault?"), metadata=AUTH, timeout=5
            )


async def test_internal_ports_refuse_a_caller_without_a_client_certificate(secured):
    cluster, client = secured
    for service in SERVICES[:3]:  # embedding, retrieval, generation
        assert await health_status(cluster.address(service), 2.0, client) == "SERVING"
        ca_only = grpc.ssl_channel_credentials(root_certificates=client.ca)
        async with grpc.aio.secure_channel(cluster.address(service), ca_only) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=5
                )
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, service
