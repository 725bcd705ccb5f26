"""Bearer JWTs from an OIDC issuer: signature by the issuer's JWKS, then tenant and roles
from the token's claims.

The JWKS comes from a file (read at start) or a URL (fetched at start and again, at most
every `refresh_s`, when a token names a key it does not know, which is how issuers rotate).
A fetch after start runs in a thread of its own: an issuer that hangs must not stall the
event loop every tenant's calls run on. Meanwhile a token naming the unknown key gets
UNAVAILABLE (`JWKS_REFRESHING`), which clients retry.
Only asymmetric algorithms are accepted, so a token signed with the public key as an HMAC
secret is refused.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import jwt

from rag_common.errors import Unauthenticated, Unavailable
from rag_common.reasons import Reason
from rag_common.security.identity import ROLES, Identity

log = logging.getLogger(__name__)
ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]
_ALGORITHMS_BY_KEY_TYPE = {
    "RSA": [a for a in ALGORITHMS if a.startswith(("RS", "PS"))],
    "EC": [a for a in ALGORITHMS if a.startswith("ES")],
}


@dataclass(frozen=True)
class OidcConfig:
    """Whose tokens are accepted, for whom, and where tenant and roles are in them."""

    issuer: str
    audience: str
    jwks_file: str = ""
    jwks_url: str = ""
    tenant_claim: str = "tenant"
    roles_claim: str = "roles"
    refresh_s: float = 300.0


def looks_like_jwt(token: str) -> bool:
    """Whether a bearer token is a JWT (three dot-separated parts) rather than an API key."""
    return token.count(".") == 2 and token.startswith("ey")


class OidcVerifier:
    """Verifies an issuer's JWTs and turns their claims into an Identity."""

    def __init__(self, config: OidcConfig, clock=time.monotonic) -> None:
        if bool(config.jwks_file) == bool(config.jwks_url):
            raise ValueError("OIDC needs exactly one of a JWKS file and a JWKS URL")
        self._config = config
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = -float("inf")
        self._refreshing = threading.Event()
        self._load()

    def identity(self, token: str) -> Identity:
        """The caller a valid token stands for, or Unauthenticated with a stable reason."""
        config = self._config
        try:
            key = self._key_for(jwt.get_unverified_header(token).get("kid", ""))
            claims = jwt.decode(
                token,
                key.key,
                # Only algorithms of the key's own type: a header naming PS256 for an EC key
                # would otherwise reach the RSA code with an EC key (a TypeError).
                algorithms=_ALGORITHMS_BY_KEY_TYPE.get(key.key_type, []),
                audience=config.audience,
                issuer=config.issuer,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired", reason=Reason.EXPIRED_TOKEN) from None
        except (jwt.PyJWTError, KeyError, ValueError, TypeError):
            raise Unauthenticated(
                "the token is not valid here", reason=Reason.INVALID_TOKEN
            ) from None
        tenant = claims.get(config.tenant_claim)
        if not isinstance(tenant, str) or not tenant:
            raise Unauthenticated(
                f"the token has no '{config.tenant_claim}' claim", reason=Reason.INVALID_TOKEN
            )
        roles = claims.get(config.roles_claim, [])
        roles = [roles] if isinstance(roles, str) else roles
        return Identity(
            principal=str(claims["sub"]),
            tenant=tenant,
            roles=frozenset(r for r in roles if r in ROLES),
        )

    def _key_for(self, kid: str) -> jwt.PyJWK:
        if kid in self._keys:
            return self._keys[kid]
        if not kid and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        if self._config.jwks_url:
            # A key we have not seen: the issuer may have rotated. At most every refresh_s,
            # so a flood of made-up key ids cannot make us fetch in a loop.
            if self._clock() - self._fetched_at >= self._config.refresh_s:
                self._fetched_at = self._clock()
                self._refreshing.set()
                threading.Thread(target=self._refresh, daemon=True).start()
            if self._refreshing.is_set():
                raise Unavailable(
                    "the issuer's signing keys are being fetched; retry in a second",
                    reason=Reason.JWKS_REFRESHING,
                )
            if kid in self._keys:  # fetched in the meantime
                return self._keys[kid]
        raise KeyError(kid)

    def _refresh(self) -> None:
        try:
            self._keys = _keys_of(self._document())
        except Exception:  # the issuer down or slow: keep the keys we have
            log.warning("JWKS refresh failed", exc_info=True)
        finally:
            self._refreshing.clear()

    def _load(self) -> None:
        self._fetched_at = self._clock()
        self._keys = _keys_of(self._document())

    def _document(self) -> Mapping:
        if self._config.jwks_file:
            return json.loads(Path(self._config.jwks_file).read_text())
        return jwt.PyJWKClient(self._config.jwks_url, timeout=5).fetch_data()


def _keys_of(document: Mapping) -> dict[str, jwt.PyJWK]:
    keys = {}
    for entry in document.get("keys", []):
        if entry.get("use", "sig") != "sig":
            continue
        key = jwt.PyJWK(entry)
        keys[entry.get("kid", "")] = key
    return keys
