"""API-key authentication and role checks for the public QueryService and DocumentService."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from rag_common.errors import PermissionDenied, Unauthenticated
from rag_common.reasons import Reason
from rag_common.security.identity import ADMIN, OPERATOR, READER, WRITER, Identity
from rag_query.config import ApiKey
from rag_query.oidc import OidcVerifier, looks_like_jwt

# The role each public method needs; a method not listed needs admin.
METHOD_ROLES = {
    "/rag.v1.QueryService/Query": READER,
    "/rag.v1.QueryService/StreamQuery": READER,
    "/rag.v1.DocumentService/IngestDocuments": WRITER,
    "/rag.v1.DocumentService/DeleteDocuments": WRITER,
    "/rag.v1.DocumentService/ListDocuments": READER,
    "/rag.v1.DocumentService/GetDocument": READER,
    # Everything a tenant has stored: its own admin's decision, for that tenant alone.
    "/rag.v1.AdminService/EraseTenantData": ADMIN,
    # Maintenance stops every tenant: a tenant's own admin may not.
    "/rag.v1.AdminService/SetMaintenance": OPERATOR,
    # The whole system's state (breakers, providers, error counts): an operator's.
    "/rag.v1.HealthDetailsService/GetHealthDetails": OPERATOR,
}


HASHED_PREFIX = "sha256:"


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def key_digest(configured: str) -> bytes:
    """The SHA-256 of an API key as configured: `sha256:<hex>` (what `rag keys create`
    prints, so settings never hold the key itself), or the key in plain text."""
    if configured.startswith(HASHED_PREFIX):
        return bytes.fromhex(configured.removeprefix(HASHED_PREFIX))
    return _digest(configured)


class Authenticator:
    """Resolves `authorization: Bearer <api key or JWT>` to an Identity and enforces the
    method's role.

    Keys are held only as SHA-256 digests, so a memory dump or a log line never shows one.
    A JWT is verified by `oidc` (the issuer's keys) when configured. Identity headers a
    caller sends itself are ignored: only the key or the token decides the tenant.
    """

    def __init__(self, keys: Mapping[str, ApiKey], oidc: OidcVerifier | None = None) -> None:
        self._oidc = oidc
        self._identities = {
            key_digest(key): Identity(
                principal=cfg.principal or f"key-{key_digest(key).hex()[:8]}",
                tenant=cfg.tenant,
                roles=frozenset(cfg.roles),
            )
            for key, cfg in keys.items()
        }

    def __call__(self, method: str, metadata: Mapping[str, str]) -> Identity:
        """The caller of `method`, or Unauthenticated / PermissionDenied."""
        header = metadata.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if not header:
            raise Unauthenticated(
                "missing 'authorization: Bearer <api key>' metadata",
                reason=Reason.MISSING_CREDENTIALS,
            )
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated(
                "authorization must be 'Bearer <api key>'", reason=Reason.MALFORMED_CREDENTIALS
            )
        token = token.strip()
        if self._oidc is not None and looks_like_jwt(token):
            identity = self._oidc.identity(token)
        else:
            identity = self._identities.get(_digest(token))
        if identity is None:
            raise Unauthenticated("unknown API key", reason=Reason.INVALID_API_KEY)
        required = METHOD_ROLES.get(method, ADMIN)
        if not identity.has_role(required):
            raise PermissionDenied.role_required(required, identity)
        return identity
