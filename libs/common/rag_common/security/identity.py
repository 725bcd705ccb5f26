"""Who is calling: principal, tenant and roles (carried between services by credentials.py)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

REQUEST_ID_KEY = "x-request-id"

READER = "reader"
WRITER = "writer"
ADMIN = "admin"
# System-wide actions (maintenance), across every tenant; grants nothing inside one.
OPERATOR = "operator"
ROLES = (READER, WRITER, ADMIN, OPERATOR)

# A role grants itself and the roles listed with it here.
_IMPLIED_ROLES = {
    ADMIN: {ADMIN, WRITER, READER},
    WRITER: {WRITER, READER},
    READER: {READER},
    OPERATOR: {OPERATOR},
}


@dataclass(frozen=True)
class Identity:
    """An authenticated caller. `tenant` scopes every read and write it makes."""

    principal: str
    tenant: str
    roles: frozenset[str]

    def has_role(self, role: str) -> bool:
        """Whether any of the caller's roles grants `role`."""
        return any(role in _IMPLIED_ROLES.get(own, {own}) for own in self.roles)


def metadata_dict(pairs: Iterable[tuple[str, str | bytes]] | None) -> dict[str, str]:
    """Turn gRPC invocation metadata into a dict of text values (binary headers dropped)."""
    return {k: v for k, v in (pairs or ()) if isinstance(v, str)}
