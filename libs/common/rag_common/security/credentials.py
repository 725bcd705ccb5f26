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

import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from rag_common.errors import PermissionDenied, Unauthenticated
from rag_common.reasons import Reason
from rag_common.security import hs256
from rag_common.security.identity import OPERATOR, Identity
from rag_common.security.tls import TlsFiles
from rag_common.settings import ServiceSettings

log = logging.getLogger(__name__)

CREDENTIAL_KEY = "x-rag-credential"
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
    """Signs this service's outbound calls and checks its inbound ones; and the TLS files
    its channels use (None: plaintext).

    `keys` is one key, or several separated by commas: the first signs, every one is
    accepted, each token naming its key by `kid` (a digest, never the key). That is how the
    key rotates without a failed call: roll "old,new", then "new,old", then "new"; at every
    step each pod accepts what every other pod signs.
    """

    def __init__(self, keys: str, service: str, tls: TlsFiles | None = None) -> None:
        secrets = [k.strip().encode() for k in keys.split(",") if k.strip()]
        self._keys = {_key_id(k): k for k in secrets}
        self._signing = secrets[0] if secrets else b""
        self._signing_kid = _key_id(self._signing)
        self.service = service
        self.tls = tls

    @property
    def configured(self) -> bool:
        """Whether keys long enough to sign with are set."""
        return bool(self._keys) and all(len(k) >= _MIN_KEY_BYTES for k in self._keys.values())

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
                reason=Reason.NO_IDENTITY_KEY,
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
        return [(CREDENTIAL_KEY, hs256.sign(claims, self._signing, self._signing_kid))]

    def verify(self, metadata: dict[str, str], method: str) -> Caller:
        """The caller of an inbound call of `method`, or Unauthenticated (a stable reason,
        no detail)."""
        if not self.configured:
            raise Unauthenticated(
                "this service has no RAG_IDENTITY_KEY and accepts no call",
                reason=Reason.NO_IDENTITY_KEY,
            )
        token = metadata.get(CREDENTIAL_KEY)
        if not token:
            raise Unauthenticated(
                "internal services accept calls only from the suite's services",
                reason=Reason.MISSING_CREDENTIAL,
            )
        try:
            claims, kid = hs256.verify(
                token, self._keys, audience=self.service, issuer=_ISSUER, leeway_s=_SKEW_S
            )
        except hs256.ExpiredToken:
            raise Unauthenticated(
                "the credential has expired", reason=Reason.EXPIRED_CREDENTIAL
            ) from None
        except hs256.InvalidToken:
            raise Unauthenticated(
                "the credential is not valid", reason=Reason.INVALID_CREDENTIAL
            ) from None
        # A credential of the previous release names no key and no method. Accepted so that
        # a rolling upgrade costs no call while old pods still call new ones; its caller's
        # role is checked all the same, and no pod of this release mints one.
        bound = claims.get("method")
        if (kid and bound is None) or (bound is not None and bound != method):
            raise Unauthenticated("the credential is not valid", reason=Reason.INVALID_CREDENTIAL)
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


def _key_id(key: bytes) -> str:
    """A token's `kid`: which key signed it, without saying anything of the key."""
    return hashlib.sha256(b"rag-identity-key-id\0" + key).hexdigest()[:16]


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
            "RAG_IDENTITY_KEY is unset, or a key in it is shorter than 32 characters: "
            "internal calls are refused, both ways"
        )
    return credentials
