"""Bearer JWTs from an OIDC issuer, verified by its JWKS (a file, or a URL served locally)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import ValidationError

from rag_common.errors import PermissionDenied, Unauthenticated, Unavailable
from rag_query.auth import Authenticator
from rag_query.config import ApiKey, QuerySettings
from rag_query.oidc import OidcConfig, OidcVerifier

ISSUER, AUDIENCE = "https://login.example.com/", "rag"
QUERY, INGEST = "/rag.v1.QueryService/Query", "/rag.v1.DocumentService/IngestDocuments"


class Issuer:
    """Signs tokens with keys it publishes as a JWKS."""

    def __init__(self) -> None:
        self.keys = {}
        self.rotate("k1")

    def rotate(self, kid: str) -> None:
        self.keys[kid] = ec.generate_private_key(ec.SECP256R1())
        self.kid = kid

    def jwks(self) -> dict:
        entries = []
        for kid, key in self.keys.items():
            entry = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
            entries.append(entry | {"kid": kid, "use": "sig", "alg": "ES256"})
        return {"keys": entries}

    def token(self, **claims) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": now + 300, "iat": now}
        body |= {"tenant": "acme", "roles": ["reader"]} | claims
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, self.keys[self.kid], algorithm="ES256", headers={"kid": self.kid})


def _hs256(header: dict, claims: dict, secret: bytes) -> str:
    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signed = f"{part(json.dumps(header).encode())}.{part(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signed.encode(), hashlib.sha256).digest()
    return f"{signed}.{part(signature)}"


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.fixture
def issuer():
    return Issuer()


@pytest.fixture
def authenticate(issuer, tmp_path):
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(issuer.jwks()))
    verifier = OidcVerifier(OidcConfig(ISSUER, AUDIENCE, jwks_file=str(jwks)))
    keys = {"an-api-key": ApiKey(tenant="globex", roles=["writer"])}
    return Authenticator(keys, verifier)


def test_a_valid_token_gives_its_subject_tenant_and_roles(issuer, authenticate):
    identity = authenticate(QUERY, bearer(issuer.token()))
    assert (identity.principal, identity.tenant, identity.roles) == (
        "alice",
        "acme",
        frozenset({"reader"}),
    )
    with pytest.raises(PermissionDenied):
        authenticate(INGEST, bearer(issuer.token()))  # a reader's token
    assert authenticate(INGEST, bearer(issuer.token(roles=["writer", "superuser"]))).tenant
    assert authenticate(QUERY, bearer("an-api-key")).tenant == "globex"  # keys still work


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp": int(time.time()) - 10}, "EXPIRED_TOKEN"),
        ({"iss": "https://evil.example.com/"}, "INVALID_TOKEN"),
        ({"aud": "someone-else"}, "INVALID_TOKEN"),
        ({"tenant": None}, "INVALID_TOKEN"),
        ({"sub": None}, "INVALID_TOKEN"),
    ],
)
def test_a_token_for_someone_else_or_past_its_time_is_refused(issuer, authenticate, claims, reason):
    with pytest.raises(Unauthenticated) as refused:
        authenticate(QUERY, bearer(issuer.token(**claims)))
    assert refused.value.reason == reason


def test_a_token_signed_by_another_key_or_as_hmac_is_refused(issuer, authenticate):
    forger = Issuer()
    with pytest.raises(Unauthenticated):
        authenticate(QUERY, bearer(forger.token()))
    # The classic forgery: HS256 with the issuer's public key as the shared secret.
    public = (
        issuer.keys["k1"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": int(time.time()) + 60}
    hmac_token = _hs256({"alg": "HS256", "kid": "k1"}, claims | {"tenant": "acme"}, public)
    with pytest.raises(Unauthenticated):
        authenticate(QUERY, bearer(hmac_token))


@pytest.mark.parametrize("algorithm", ["PS256", "RS256", "RS512", "ES256", "ES384"])
@pytest.mark.parametrize("kid", ["ec", "rsa"])
def test_a_header_naming_an_algorithm_of_another_key_type_is_an_invalid_token(
    tmp_path, kid, algorithm
):
    """A JWKS with an RSA and an EC key; a token whose header names any algorithm and
    either key, with a made-up signature: INVALID_TOKEN, never an internal error."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    entries = [
        json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key())) | {"kid": "rsa"},
        json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key())) | {"kid": "ec"},
    ]
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": entries}))
    verifier = OidcVerifier(OidcConfig(ISSUER, AUDIENCE, jwks_file=str(jwks)))
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": int(time.time()) + 60}

    def part(data: dict | bytes) -> str:
        raw = data if isinstance(data, bytes) else json.dumps(data).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    forged = ".".join(
        [part({"alg": algorithm, "kid": kid}), part(claims | {"tenant": "acme"}), part(b"x" * 64)]
    )
    with pytest.raises(Unauthenticated) as refused:
        verifier.identity(forged)
    assert refused.value.reason == "INVALID_TOKEN"


def jwks_server(issuer: Issuer, on_get) -> ThreadingHTTPServer:
    """The issuer's JWKS over HTTP on a free port; `on_get(path)` runs before each answer."""

    class Jwks(BaseHTTPRequestHandler):
        def do_GET(self):
            on_get(self.path)
            body = json.dumps(issuer.jwks()).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Jwks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_keys_from_a_url_follow_a_rotation_without_fetching_in_a_loop(issuer):
    fetches = []
    server = jwks_server(issuer, lambda path: fetches.append(path))
    clock = [0.0]
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/jwks"
        config = OidcConfig(ISSUER, AUDIENCE, jwks_url=url, refresh_s=60)
        verifier = OidcVerifier(config, clock=lambda: clock[0])
        assert verifier.identity(issuer.token()).tenant == "acme"
        issuer.rotate("k2")
        clock[0] = 61.0
        assert verified_after_retries(verifier, issuer.token()).tenant == "acme"  # new key
        for _ in range(20):  # made-up key ids: refused, and no fetch each time
            with pytest.raises(Unauthenticated):
                verifier.identity(Issuer().token())
        assert len(fetches) == 2
    finally:
        server.shutdown()


def verified_after_retries(verifier: OidcVerifier, token: str):
    """What a client retrying UNAVAILABLE (JWKS_REFRESHING) for up to 5 s gets."""
    deadline = time.monotonic() + 5
    while True:
        try:
            return verifier.identity(token)
        except Unavailable as exc:
            assert exc.reason == "JWKS_REFRESHING"
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_an_issuer_that_hangs_never_stalls_the_caller(issuer):
    """The JWKS URL answers at start, then hangs: a token naming a new key is answered at
    once (retry later), not after the fetch's timeout, and the old keys keep working."""
    hang = threading.Event()
    server = jwks_server(issuer, lambda path: hang.is_set() and time.sleep(6))
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/jwks"
        verifier = OidcVerifier(OidcConfig(ISSUER, AUDIENCE, jwks_url=url, refresh_s=0))
        known = issuer.token()
        hang.set()
        issuer.rotate("k2")
        started = time.monotonic()
        with pytest.raises(Unavailable):
            verifier.identity(issuer.token())
        assert verifier.identity(known).tenant == "acme"
        assert time.monotonic() - started < 0.5
    finally:
        server.shutdown()


def test_an_issuer_without_audience_or_keys_is_refused_at_start():
    with pytest.raises(ValidationError, match="AUDIENCE"):
        QuerySettings(oidc_issuer=ISSUER, oidc_jwks_url="http://x")
    with pytest.raises(ValidationError, match="JWKS"):
        QuerySettings(oidc_issuer=ISSUER, oidc_audience=AUDIENCE)
