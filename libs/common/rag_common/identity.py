"""Who is calling: principal, tenant and roles, and how that travels in gRPC metadata."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

TENANT_KEY = "x-rag-tenant"
PRINCIPAL_KEY = "x-rag-principal"
ROLES_KEY = "x-rag-roles"
REQUEST_ID_KEY = "x-request-id"

READER = "reader"
WRITER = "writer"
ADMIN = "admin"

# A role grants itself and every role listed after it here.
_IMPLIED_ROLES = {ADMIN: {ADMIN, WRITER, READER}, WRITER: {WRITER, READER}, READER: {READER}}


@dataclass(frozen=True)
class Identity:
    """An authenticated caller. `tenant` scopes every read and write it makes."""

    principal: str
    tenant: str
    roles: frozenset[str]

    def has_role(self, role: str) -> bool:
        """Whether any of the caller's roles grants `role`."""
        return any(role in _IMPLIED_ROLES.get(own, {own}) for own in self.roles)

    def to_metadata(self) -> list[tuple[str, str]]:
        """Metadata that forwards this identity to an internal service."""
        return [
            (PRINCIPAL_KEY, self.principal),
            (TENANT_KEY, self.tenant),
            (ROLES_KEY, ",".join(sorted(self.roles))),
        ]


def identity_from_metadata(metadata: Mapping[str, str]) -> Identity | None:
    """Read a forwarded identity; None when the call carries no tenant.

    Internal services trust these headers: only QueryService faces callers, and it sets them
    from a verified API key.
    """
    tenant = metadata.get(TENANT_KEY, "")
    if not tenant:
        return None
    roles = frozenset(r for r in metadata.get(ROLES_KEY, "").split(",") if r)
    return Identity(principal=metadata.get(PRINCIPAL_KEY, ""), tenant=tenant, roles=roles)


def metadata_dict(pairs: Iterable[tuple[str, str | bytes]] | None) -> dict[str, str]:
    """Turn gRPC invocation metadata into a dict of text values (binary headers dropped)."""
    return {k: v for k, v in (pairs or ()) if isinstance(v, str)}
