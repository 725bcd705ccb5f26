"""Bearer JWTs from an OIDC issuer: signature by the issuer's JWKS, then tenant and roles
from the token's claims.

The JWKS comes from a file (read at start) or a URL (fetched at start and again, at most
every `refresh_s`, when a token names a key it does not know, which is how issuers rotate).
Only asymmetric algorithms are accepted, so a token signed with the public key as an HMAC
secret is refused.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import jwt

from rag_common.errors import Unauthenticated
from rag_common.identity import ROLES, Identity

ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]


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
        self._load()

    def identity(self, token: str) -> Identity:
        """The caller a valid token stands for, or Unauthenticated with a stable reason."""
        config = self._config
        try:
            key = self._key_for(jwt.get_unverified_header(token).get("kid", ""))
            claims = jwt.decode(
                token,
                key.key,
                algorithms=ALGORITHMS,
                audience=config.audience,
                issuer=config.issuer,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired", reason="EXPIRED_TOKEN") from None
        except (jwt.PyJWTError, KeyError, ValueError):
            raise Unauthenticated("the token is not valid here", reason="INVALID_TOKEN") from None
        tenant = claims.get(config.tenant_claim)
        if not isinstance(tenant, str) or not tenant:
            raise Unauthenticated(
                f"the token has no '{config.tenant_claim}' claim", reason="INVALID_TOKEN"
            )
        roles = claims.get(config.roles_claim, [])
        roles = [roles] if isinstance(roles, str) else roles
        return Identity(
            principal=str(claims["sub"]),
            tenant=tenant,
            roles=frozenset(r for r in roles if r in ROLES),
        )

    def _key_for(self, kid: str) -> jwt.PyJWK:
        if kid not in self._keys and self._config.jwks_url:
            # A key we have not seen: the issuer may have rotated. At most every refresh_s,
            # so a flood of made-up key ids cannot make us fetch in a loop.
            if self._clock() - self._fetched_at >= self._config.refresh_s:
                self._load()
        if kid in self._keys:
            return self._keys[kid]
        if not kid and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        raise KeyError(kid)

    def _load(self) -> None:
        self._fetched_at = self._clock()
        if self._config.jwks_file:
            document = json.loads(Path(self._config.jwks_file).read_text())
        else:
            document = jwt.PyJWKClient(self._config.jwks_url, timeout=5).fetch_data()
        self._keys = _keys_of(document)


def _keys_of(document: Mapping) -> dict[str, jwt.PyJWK]:
    keys = {}
    for entry in document.get("keys", []):
        if entry.get("use", "sig") != "sig":
            continue
        key = jwt.PyJWK(entry)
        keys[entry.get("kid", "")] = key
    return keys
