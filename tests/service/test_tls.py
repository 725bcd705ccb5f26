"""TLS on the ports, mTLS on the internal ones, with certificates from `rag certs`."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rag.v1 import embedding_service_pb2 as pb
from rag.v1 import embedding_service_pb2_grpc as pb_grpc
from rag_cli.launcher import free_port
from rag_common.client import channel as channel_module
from rag_common.client.embedding import EmbeddingClient
from rag_common.security.tls import TlsFiles, write_development_ca
from rag_common.settings import ServiceSettings
from rag_embedding.servicer import servicers
from tests.conftest import start_host
from tests.support.signed import credentials


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("certs")
    write_development_ca(folder, ["embedding", "query"], ["localhost", "127.0.0.1"])
    return folder


def files(certs, name: str) -> TlsFiles:
    return TlsFiles(*(p.read_bytes() for p in tls_paths(certs, name)))


def tls_paths(certs, name: str):
    return certs / f"{name}.pem", certs / f"{name}-key.pem", certs / "ca.pem"


def tls_settings(certs, name: str, **more) -> ServiceSettings:
    cert, key, ca = tls_paths(certs, name)
    return ServiceSettings(
        port=0,
        grace_period_s=1.0,
        RAG_TLS_CERT_FILE=str(cert),
        RAG_TLS_KEY_FILE=str(key),
        RAG_TLS_CA_FILE=str(ca),
        **more,
    )


async def embed(channel: grpc.aio.Channel) -> int:
    stub = pb_grpc.EmbeddingServiceStub(channel)
    metadata = credentials("embedding").metadata(
        "embedding", None, method="/rag.v1.EmbeddingService/Embed"
    )
    reply = await stub.Embed(pb.EmbedRequest(texts=["over tls"]), metadata=metadata, timeout=10)
    return len(reply.embeddings)


async def test_an_internal_port_admits_only_callers_with_a_certificate_the_ca_signed(
    embedder, certs, tmp_path
):
    host = await start_host(servicers(embedder), tls_settings(certs, "embedding"))
    address = f"127.0.0.1:{host.port}"
    try:
        with_cert = files(certs, "query").channel_credentials()
        async with grpc.aio.secure_channel(address, with_cert) as channel:
            assert await embed(channel) == 1
        without = grpc.ssl_channel_credentials(root_certificates=files(certs, "query").ca)
        stranger_dir = tmp_path / "other-ca"
        write_development_ca(stranger_dir, ["query"], ["127.0.0.1"])
        stranger = files(stranger_dir, "query")  # a certificate, but from another CA
        strange = grpc.ssl_channel_credentials(
            root_certificates=files(certs, "query").ca,
            private_key=stranger.key,
            certificate_chain=stranger.cert,
        )
        for credentials_ in (without, strange):
            async with grpc.aio.secure_channel(address, credentials_) as channel:
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await embed(channel)
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        async with grpc.aio.insecure_channel(address) as channel:  # no TLS at all
            with pytest.raises(grpc.aio.AioRpcError):
                await embed(channel)
    finally:
        await host.stop(0)


async def test_a_port_without_client_auth_takes_any_tls_caller(embedder, certs):
    settings = tls_settings(certs, "embedding", require_client_certs=False)
    host = await start_host(servicers(embedder), settings)
    try:
        ca_only = grpc.ssl_channel_credentials(root_certificates=files(certs, "query").ca)
        async with grpc.aio.secure_channel(f"127.0.0.1:{host.port}", ca_only) as channel:
            assert await embed(channel) == 1
    finally:
        await host.stop(0)


def test_half_a_tls_configuration_is_refused(certs):
    cert, _, _ = tls_paths(certs, "query")
    with pytest.raises(ValueError, match="RAG_TLS_KEY_FILE"):
        TlsFiles.from_settings(ServiceSettings(RAG_TLS_CERT_FILE=str(cert)))
    assert TlsFiles.from_settings(ServiceSettings()) is None


async def test_probes_get_plaintext_health_and_nothing_else_beside_a_tls_port(embedder, certs):
    probe = free_port()
    host = await start_host(servicers(embedder), tls_settings(certs, "embedding", probe_port=probe))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{probe}") as channel:
            status = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="liveness"), timeout=5
            )
            assert status.status == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await embed(channel)
            assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
        await host.mark_not_serving()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{probe}") as channel:
            status = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
            assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        await host.stop(0)


async def test_the_cli_certificate_can_call_a_service_but_never_pose_as_one(embedder, tmp_path):
    """One identity per certificate: the CLI's may call (client usage, its own name only);
    a port serving with it is refused by every caller that checks the server."""
    folder = tmp_path / "ca"
    write_development_ca(folder, ["embedding", "cli"], ["localhost", "127.0.0.1"])
    genuine = await start_host(servicers(embedder), tls_settings(folder, "embedding"))
    impostor = await start_host(servicers(embedder), tls_settings(folder, "cli"))
    caller = files(folder, "cli").channel_credentials()
    try:
        async with grpc.aio.secure_channel(f"127.0.0.1:{genuine.port}", caller) as channel:
            assert await embed(channel) == 1
        async with grpc.aio.secure_channel(f"127.0.0.1:{impostor.port}", caller) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await embed(channel)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await impostor.stop(0)
        await genuine.stop(0)


async def test_replicas_found_by_name_are_checked_against_that_name(embedder, tmp_path):
    """A `dns:///name:port` target (a headless Service) is dialled per resolved address;
    TLS still checks each replica's certificate against the name, not the address."""
    name = socket.gethostname()
    folder = tmp_path / "named"
    write_development_ca(folder, ["embedding", "query"], [name])  # the name only, no IP
    # Every interface: the name may resolve to another loopback address than 127.0.0.1.
    host = await start_host(servicers(embedder), tls_settings(folder, "embedding", host="0.0.0.0"))
    query = credentials("query")
    query.tls = files(folder, "query")
    client = EmbeddingClient(f"dns:///{name}:{host.port}", timeout_s=10, credentials=query)
    try:
        assert len(await client.embed(["by name"], "query")) == 1
        [replica] = client.replicas.all
        assert replica.address != f"{name}:{host.port}"  # dialled by address
    finally:
        await client.close()
        await host.stop(0)


def presented_certificate(port: int, client: TlsFiles, folder: Path) -> bytes:
    """The certificate a new connection to `port` is shown (DER)."""
    cert, key = folder / "probe.pem", folder / "probe-key.pem"
    cert.write_bytes(client.cert)
    key.write_bytes(client.key)
    context = ssl.create_default_context(cadata=client.ca.decode())
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return tls.getpeercert(binary_form=True)


async def test_renewed_certificates_are_used_without_a_restart_and_no_call_fails(
    embedder, tmp_path, monkeypatch
):
    """A CA rotation as Kubernetes Secrets carry it out: both CAs trusted, then every
    certificate replaced on disk by one the new CA signed, under load. No call fails, a
    new connection is shown the new certificate, and clients present theirs."""
    old, new, live = tmp_path / "old", tmp_path / "new", tmp_path / "live"
    for folder in (old, new):
        write_development_ca(folder, ["embedding", "query"], ["localhost", "127.0.0.1"])
    live.mkdir()
    both_cas = (old / "ca.pem").read_bytes() + (new / "ca.pem").read_bytes()

    def install(source: Path) -> None:
        for name in ("embedding", "query"):
            for suffix in (".pem", "-key.pem"):
                staged = live / f".{name}{suffix}"
                staged.write_bytes((source / f"{name}{suffix}").read_bytes())
                staged.replace(live / f"{name}{suffix}")  # atomic, as a Secret's swap
        (live / "ca.pem").write_bytes(both_cas)

    install(old)
    host = await start_host(servicers(embedder), tls_settings(live, "embedding"))
    cert, key, ca = tls_paths(live, "query")
    settings = ServiceSettings(
        RAG_TLS_CERT_FILE=str(cert), RAG_TLS_KEY_FILE=str(key), RAG_TLS_CA_FILE=str(ca)
    )
    query = credentials("query")
    query.tls = TlsFiles.from_settings(settings)
    monkeypatch.setattr(channel_module, "TLS_CHECK_S", 0.2)
    client = EmbeddingClient(f"127.0.0.1:{host.port}", timeout_s=10, credentials=query)
    failures, calls = [], 0
    try:
        before = presented_certificate(host.port, query.tls, tmp_path)
        deadline = time.monotonic() + 3.0
        installed = False
        while time.monotonic() < deadline:
            if not installed and time.monotonic() > deadline - 2.0:
                install(new)
                installed = True
            try:
                await client.embed([f"rotating {calls}"], "document")
            except Exception as exc:  # any failure at all is the finding
                failures.append(repr(exc))
            calls += 1
            await asyncio.sleep(0.01)
        after = presented_certificate(host.port, TlsFiles.from_settings(settings), tmp_path)
    finally:
        await client.close()
        await host.stop(0)
    assert failures == [] and calls > 50
    new_server = x509.load_pem_x509_certificate((new / "embedding.pem").read_bytes())
    assert before != after
    assert after == new_server.public_bytes(serialization.Encoding.DER)
    assert query.tls.cert == (new / "query.pem").read_bytes()  # the client renewed too
