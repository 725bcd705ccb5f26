"""Signed credentials between the suite's services: internal ports trust nothing else.

QueryService authenticates callers; every call it (or retrieval) makes to an internal
service carries a token minted for that one call, HMAC-signed (JWT, HS256) with a key all
the suite's services share (`RAG_IDENTITY_KEY`, from a Secret). The token names the calling
service, the service and the method it is meant for, and the caller's identity when there
is one (principal, tenant, roles); it expires a few seconds after the call's own deadline.
A call with no token, a forged one, one for another service or another method, an expired
one, or any call to a service with no key configured is refused with UNAUTHENTICATED
before any work; a caller whose role does not allow the method gets PERMISSION_DENIED. A
token captured on the wire opens nothing but the call it was made for, for seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

import jwt

from rag_common.errors import PermissionDenied, Unauthenticated
from rag_common.identity import OPERATOR, Identity
from rag_common.settings import ServiceSettings
from rag_common.tls import TlsFiles

log = logging.getLogger(__name__)

CREDENTIAL_KEY = "x-rag-credential"
_ALGORITHM = "HS256"
_ISSUER = "rag"
_LIFETIME_S = 60.0  # the longest a token lives, whatever the call's deadline
_SKEW_S = 5.0  # clocks of two pods may differ by this much
_MIN_KEY_BYTES = 32


@dataclass(frozen=True)
class Caller:
    """Who made an internal call: a service of the suite, on behalf of `identity` if any."""

    service: str
    identity: Identity | None


class Credentials:
    """Signs this service's outbound calls and checks its inbound ones, with one key; and
    the TLS files its channels use (None: plaintext)."""

    def __init__(self, key: str, service: str, tls: TlsFiles | None = None) -> None:
        self._key = key.encode()
        self.service = service
        self.tls = tls

    @property
    def configured(self) -> bool:
        """Whether a key long enough to sign with is set."""
        return len(self._key) >= _MIN_KEY_BYTES

    def metadata(
        self,
        audience: str,
        identity: Identity | None,
        *,
        method: str,
        lifetime_s: float = _LIFETIME_S,
    ) -> list[tuple[str, str]]:
        """The metadata that authenticates one call of `method` (its full path, e.g.
        "/rag.v1.RetrievalService/Retrieve") to `audience` (e.g. "retrieval"), valid for
        about `lifetime_s` (the call's timeout)."""
        if not self.configured:
            raise Unauthenticated(
                "RAG_IDENTITY_KEY is not set: internal calls cannot be signed",
                reason="NO_IDENTITY_KEY",
            )
        now = time.time()
        claims: dict = {
            "iss": _ISSUER,
            "sub": self.service,
            "aud": audience,
            "method": method,
            "iat": int(now),
            "exp": now + min(_LIFETIME_S, max(lifetime_s, 0.0) + _SKEW_S),
        }
        if identity is not None:
            claims |= {
                "principal": identity.principal,
                "tenant": identity.tenant,
                "roles": sorted(identity.roles),
            }
        return [(CREDENTIAL_KEY, jwt.encode(claims, self._key, algorithm=_ALGORITHM))]

    def verify(self, metadata: dict[str, str], method: str) -> Caller:
        """The caller of an inbound call of `method`, or Unauthenticated (a stable reason,
        no detail)."""
        if not self.configured:
            raise Unauthenticated(
                "this service has no RAG_IDENTITY_KEY and accepts no call",
                reason="NO_IDENTITY_KEY",
            )
        token = metadata.get(CREDENTIAL_KEY)
        if not token:
            raise Unauthenticated(
                "internal services accept calls only from the suite's services",
                reason="MISSING_CREDENTIAL",
            )
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[_ALGORITHM],
                audience=self.service,
                issuer=_ISSUER,
                leeway=_SKEW_S,
                options={"require": ["exp", "sub", "aud", "iss", "method"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated(
                "the credential has expired", reason="EXPIRED_CREDENTIAL"
            ) from None
        except jwt.InvalidTokenError:
            raise Unauthenticated(
                "the credential is not valid", reason="INVALID_CREDENTIAL"
            ) from None
        if claims["method"] != method:  # captured from another call
            raise Unauthenticated("the credential is not valid", reason="INVALID_CREDENTIAL")
        identity = None
        if claims.get("principal"):
            identity = Identity(
                principal=str(claims.get("principal", "")),
                tenant=str(claims.get("tenant", "")),
                roles=frozenset(map(str, claims.get("roles", ()))),
            )
        return Caller(service=str(claims["sub"]), identity=identity)

    def resolver(self, required_roles: Mapping[str, str] | None = None):
        """An identity resolver for an internal service's ServiceHost.

        `required_roles` maps a method's full path to the role its caller must hold: a
        call on behalf of nobody, or of someone without it, is refused.
        """
        required_roles = required_roles or {}

        def resolve(method: str, metadata: dict[str, str]) -> Identity | None:
            identity = self.verify(metadata, method).identity
            role = required_roles.get(method)
            if role is not None and (identity is None or not identity.has_role(role)):
                raise PermissionDenied.role_required(role, identity)
            return identity

        return resolve


# Who `rag` signs as for system-wide calls (backups, health details): an operator of no
# tenant, so it can read or write no tenant's documents.
OPERATOR_CLI = Identity(principal="rag-cli", tenant="", roles=frozenset({OPERATOR}))


def service_credentials(settings: ServiceSettings, service: str) -> Credentials:
    """This service's credentials from its settings; says so once when there is no key."""
    credentials = Credentials(
        settings.identity_key.get_secret_value(), service, TlsFiles.from_settings(settings)
    )
    if not credentials.configured:
        log.error(
            "RAG_IDENTITY_KEY is unset or shorter than 32 characters: internal calls are "
            "refused, both ways"
        )
    return credentials
