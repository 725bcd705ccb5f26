"""TLS on every port, mTLS between services, and a development CA to try both with.

One certificate and key per process serve both its own port and its calls to the others (a
client certificate), and one CA bundle verifies every peer. Internal services require a
client certificate signed by that CA (RAG_<SERVICE>_REQUIRE_CLIENT_CERTS, on by default);
the public port asks for none, since its callers prove who they are with API keys.

The files are read again when they change (a renewed Kubernetes Secret): a port presents
the new certificate on its next connection, and clients reopen their channels with it
(endpoints.py). A certificate and key that do not match (files caught mid-update) are
ignored until they do, so a renewal never costs a call.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from rag_common.settings import ServiceSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TlsFiles:
    """The PEM bytes of this process's certificate chain, its key and the CA bundle, and
    the files they were read from (None: given as bytes, never re-read)."""

    cert: bytes
    key: bytes
    ca: bytes
    paths: tuple[Path, Path, Path] | None = field(default=None, compare=False)

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> TlsFiles | None:
        """The configured files, or None for plaintext (all three unset)."""
        paths = (settings.tls_cert_file, settings.tls_key_file, settings.tls_ca_file)
        if not any(paths):
            return None
        if not all(paths):
            raise ValueError(
                "TLS needs all of RAG_TLS_CERT_FILE, RAG_TLS_KEY_FILE and RAG_TLS_CA_FILE"
            )
        files = (Path(paths[0]), Path(paths[1]), Path(paths[2]))
        cert, key, ca = (p.read_bytes() for p in files)
        return cls(cert, key, ca, files)

    def reloaded(self) -> TlsFiles:
        """The files as they are now: `self` when unchanged, unreadable, or a certificate
        and key that do not belong together (caught mid-update)."""
        if self.paths is None:
            return self
        try:
            fresh = TlsFiles(*(p.read_bytes() for p in self.paths), self.paths)
        except OSError:
            return self
        if fresh == self or not _pair(fresh.cert, fresh.key):
            return self
        log.info("TLS files changed: new connections use them")
        return fresh

    def server_credentials(self, *, require_client_certs: bool) -> grpc.ServerCredentials:
        """For this process's port; with `require_client_certs`, only peers the CA signed.
        Each new connection gets the files as they are then."""
        current = [self]

        def changed() -> grpc.ServerCertificateConfiguration | None:
            fresh = current[0].reloaded()
            if fresh is current[0]:
                return None  # gRPC keeps what it has
            current[0] = fresh
            return fresh._server_config()

        return grpc.dynamic_ssl_server_credentials(
            self._server_config(), changed, require_client_authentication=require_client_certs
        )

    def _server_config(self) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(self.key, self.cert)], root_certificates=self.ca
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """For calls to the other services: verify them by the CA, show our certificate."""
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=self.key, certificate_chain=self.cert
        )


def write_development_ca(
    folder: Path, names: list[str], hosts: list[str], *, clients: tuple[str, ...] = ("cli",)
) -> list[Path]:
    """A CA (ca.pem) and, for each name, `<name>.pem` and `<name>-key.pem` signed by it, for
    one year. One identity per certificate: a service's names itself and `hosts` (DNS names
    or IP addresses) and may serve and call; one of `clients` names only itself and may
    only call, so it cannot pose as a service. Not for production: the CA's key is written
    beside the certificates."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rag development CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        # Key identifiers: with two CAs of the same name trusted (a CA rotation), a peer
        # finds the one that signed a certificate by them.
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    written = [_write(folder / "ca.pem", ca.public_bytes(serialization.Encoding.PEM))]
    written.append(_write(folder / "ca-key.pem", _key_pem(ca_key), secret=True))
    for name in names:
        client_only = name in clients
        sans = [x509.DNSName(name)] + ([] if client_only else [_san(host) for host in hosts])
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
        if not client_only:  # a service is a server to its callers and a client of its callees
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
            .sign(ca_key, hashes.SHA256())
        )
        written.append(
            _write(folder / f"{name}.pem", cert.public_bytes(serialization.Encoding.PEM))
        )
        written.append(_write(folder / f"{name}-key.pem", _key_pem(key), secret=True))
    return written


def _pair(cert: bytes, key: bytes) -> bool:
    """Whether the key is the certificate's own."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        public = x509.load_pem_x509_certificate(cert).public_key()
        private = serialization.load_pem_private_key(key, password=None)
    except ValueError:
        return False
    raw = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return public.public_bytes(der, raw) == private.public_key().public_bytes(der, raw)


def _key_pem(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _san(host: str):
    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _write(path: Path, data: bytes, *, secret: bool = False) -> Path:
    path.write_bytes(data)
    if secret:
        path.chmod(0o600)
    return path
