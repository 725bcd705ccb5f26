from __future__ import annotations

import itertools
import time

import grpc
import pytest

from rag_common.errors import InvalidArgument, PermissionDenied, Unauthenticated, Unavailable
from rag_common.security.credentials import Credentials
from rag_common.security.identity import Identity
from rag_common.status import decode, encode
from rag_query.auth import Authenticator
from rag_query.config import ApiKey

AUTH = Authenticator(
    {
        "r-key": ApiKey(tenant="acme", roles=["reader"]),
        "w-key": ApiKey(tenant="acme", roles=["writer"], principal="ci-bot"),
    }
)
QUERY = "/rag.v1.QueryService/Query"
INGEST = "/rag.v1.DocumentService/IngestDocuments"


def test_a_valid_key_resolves_to_its_tenant_and_roles():
    identity = AUTH(INGEST, {"authorization": "Bearer w-key"})
    assert identity.tenant == "acme" and identity.principal == "ci-bot"
    assert identity.has_role("reader")  # writer implies reader


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "MISSING_CREDENTIALS"),
        ("Bearer nope", "INVALID_API_KEY"),
        ("Token r-key", "MALFORMED_CREDENTIALS"),
        ("Bearer ", "MALFORMED_CREDENTIALS"),
    ],
)
def test_bad_credentials(header, reason):
    metadata = {} if header is None else {"authorization": header}
    with pytest.raises(Unauthenticated) as caught:
        AUTH(QUERY, metadata)
    assert caught.value.reason == reason


def test_roles_gate_methods_and_unknown_methods_need_admin():
    assert AUTH(QUERY, {"authorization": "Bearer r-key"}).tenant == "acme"
    with pytest.raises(PermissionDenied):
        AUTH(INGEST, {"authorization": "Bearer r-key"})
    with pytest.raises(PermissionDenied):
        AUTH("/rag.v1.AdminService/Anything", {"authorization": "Bearer w-key"})


KEY = "k" * 32


RETRIEVE = "/rag.v1.RetrievalService/Retrieve"
UPSERT = "/rag.v1.RetrievalService/UpsertDocuments"


def test_a_signed_identity_reaches_only_the_service_and_method_it_was_signed_for():
    identity = Identity("p", "acme", frozenset({"reader", "writer"}))
    token = dict(Credentials(KEY, "query").metadata("retrieval", identity, method=RETRIEVE))
    caller = Credentials(KEY, "retrieval").verify(token, RETRIEVE)
    assert caller.identity == identity and caller.service == "query"
    own = dict(Credentials(KEY, "query").metadata("retrieval", None, method=RETRIEVE))
    assert Credentials(KEY, "retrieval").verify(own, RETRIEVE).identity is None
    refusals = {
        "MISSING_CREDENTIAL": (Credentials(KEY, "retrieval"), {}, RETRIEVE),
        "INVALID_CREDENTIAL": (Credentials("o" * 32, "retrieval"), token, RETRIEVE),
        "NO_IDENTITY_KEY": (Credentials("", "retrieval"), token, RETRIEVE),
    }
    # Captured on the wire and replayed against another method: refused.
    refusals["INVALID_CREDENTIAL (replayed)"] = (Credentials(KEY, "retrieval"), token, UPSERT)
    for reason, (verifier, metadata, method) in refusals.items():
        with pytest.raises(Unauthenticated) as refused:
            verifier.verify(metadata, method)
        assert refused.value.reason == reason.split()[0]
    with pytest.raises(Unauthenticated) as refused:  # replayed at another service
        Credentials(KEY, "generation").verify(token, RETRIEVE)
    assert refused.value.reason == "INVALID_CREDENTIAL"
    forged = {"x-rag-tenant": "acme", "x-rag-roles": "admin"}  # the headers of old
    with pytest.raises(Unauthenticated):
        Credentials(KEY, "retrieval").verify(forged, RETRIEVE)


def test_a_credential_expires_seconds_after_the_deadline_of_its_call():
    import jwt

    token = dict(
        Credentials(KEY, "query").metadata("retrieval", None, method=RETRIEVE, lifetime_s=2)
    )
    claims = jwt.decode(token["x-rag-credential"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] <= 8  # 2 s of call, 5 s for clocks, rounding


def test_an_internal_method_needs_the_role_it_was_made_for():
    resolve = Credentials(KEY, "retrieval").resolver({UPSERT: "writer"})
    reader = Identity("r", "acme", frozenset({"reader"}))
    writer = Identity("w", "acme", frozenset({"writer"}))
    minted = Credentials(KEY, "query")
    assert resolve(UPSERT, dict(minted.metadata("retrieval", writer, method=UPSERT))) == writer
    for identity in (reader, None):
        with pytest.raises(PermissionDenied) as refused:
            resolve(UPSERT, dict(minted.metadata("retrieval", identity, method=UPSERT)))
        assert refused.value.reason == "ROLE_REQUIRED"


class FakeRpcError(grpc.aio.AioRpcError):
    def __init__(self, code, details, trailers):
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailers), details)


def test_errors_keep_code_reason_and_field_across_a_hop():
    code, message, trailers = encode(InvalidArgument("documents[2].id", "bad", reason="BAD_ID"))
    decoded = decode(FakeRpcError(code, message, trailers), dependency="retrieval")
    assert isinstance(decoded, InvalidArgument)
    assert decoded.field == "documents[2].id" and decoded.reason == "BAD_ID"
    assert decoded.message == "documents[2].id: bad"


def test_a_status_without_details_from_a_dead_peer_is_unavailable():
    decoded = decode(
        FakeRpcError(grpc.StatusCode.UNAVAILABLE, "connection refused", ()), dependency="generation"
    )
    assert isinstance(decoded, Unavailable)
    assert decoded.metadata["dependency"] == "generation"
    assert "refused" not in decoded.message


def test_a_dependency_refusing_our_credentials_is_unavailable_not_the_callers_fault():
    refused = Unauthenticated("credential made with another key", reason="INVALID_CREDENTIAL")
    code, message, trailers = encode(refused)
    decoded = decode(FakeRpcError(code, message, trailers), dependency="retrieval")
    assert isinstance(decoded, Unavailable)  # the caller's own key was fine
    assert decoded.reason == "DEPENDENCY_AUTH_FAILED"
    assert decoded.metadata["dependency"] == "retrieval"


def test_the_identity_key_rotates_in_three_rollouts_with_no_call_refused():
    """Old pods and new pods side by side at each step of a rotation: each accepts what
    the other signs. A key set that shares no key with the signer is refused."""
    old, new = "o" * 32, "n" * 32
    steps = [old, f"{old},{new}", f"{new},{old}", new]
    for before, after in itertools.pairwise(steps):
        for signer, verifier in ((before, after), (after, before)):
            token = dict(Credentials(signer, "query").metadata("retrieval", None, method=RETRIEVE))
            assert Credentials(verifier, "retrieval").verify(token, RETRIEVE).service == "query"
    token = dict(Credentials(old, "query").metadata("retrieval", None, method=RETRIEVE))
    with pytest.raises(Unauthenticated) as refused:  # skipping a step: refused
        Credentials(new, "retrieval").verify(token, RETRIEVE)
    assert refused.value.reason == "INVALID_CREDENTIAL"
    assert not Credentials(f"{new},short", "retrieval").configured  # every key long enough


def test_a_credential_of_the_previous_release_is_accepted_with_its_roles_checked():
    """During a rolling upgrade old pods call new ones with credentials that name no key and
    no method: accepted, so no call fails, and the caller's role still decides."""
    import jwt

    now = time.time()
    old_format = {"iss": "rag", "sub": "query", "aud": "retrieval", "iat": int(now)}
    old_format |= {"exp": now + 60, "principal": "p", "tenant": "acme", "roles": ["reader"]}
    token = {"x-rag-credential": jwt.encode(old_format, KEY, algorithm="HS256")}
    verifier = Credentials(KEY, "retrieval")
    assert verifier.verify(token, RETRIEVE).identity.tenant == "acme"
    with pytest.raises(PermissionDenied):  # a reader's, replayed against a write
        verifier.resolver({UPSERT: "writer"})(UPSERT, token)
    # A credential of this release must name its method.
    minted = dict(Credentials(KEY, "query").metadata("retrieval", None, method=RETRIEVE))
    claims = jwt.decode(minted["x-rag-credential"], options={"verify_signature": False})
    del claims["method"]
    header = jwt.get_unverified_header(minted["x-rag-credential"])
    unbound = {"x-rag-credential": jwt.encode(claims, KEY, algorithm="HS256", headers=header)}
    with pytest.raises(Unauthenticated):
        verifier.verify(unbound, RETRIEVE)
