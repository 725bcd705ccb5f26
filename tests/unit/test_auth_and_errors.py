from __future__ import annotations

import grpc
import pytest

from rag_common.errors import InvalidArgument, PermissionDenied, Unauthenticated, Unavailable
from rag_common.identity import Identity, identity_from_metadata
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


def test_identity_round_trips_through_metadata():
    identity = Identity("p", "acme", frozenset({"reader", "writer"}))
    assert identity_from_metadata(dict(identity.to_metadata())) == identity
    assert identity_from_metadata({}) is None


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
