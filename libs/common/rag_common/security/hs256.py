"""Compact JWS tokens signed with HMAC-SHA256 (JWT "HS256"): the suite's internal credentials.

A general JWT library checks every character of every segment in Python and parses the
header twice; on a call that takes a millisecond that was a tenth of it (124 µs to verify,
42 µs to sign). This module does only what the suite's tokens need, strictly: one
algorithm, whose name the header must carry; canonical base64url segments; the signature
compared in constant time before anything of the payload is read; then the registered
claims as RFC 7519 defines them. Tokens are standard JWTs: a pod of the previous release,
which signs and verifies with PyJWT, and this one accept each other's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
import time
from collections.abc import Mapping
from typing import Any

ALGORITHM = "HS256"
_SEGMENT = re.compile(rb"[A-Za-z0-9_-]*")


class InvalidToken(Exception):
    """The token is malformed, not signed by a key we hold, or its claims do not hold."""


class ExpiredToken(InvalidToken):
    """The token was valid, and its `exp` has passed."""


def sign(claims: Mapping[str, Any], key: bytes, kid: str) -> str:
    """`claims` as a token signed with `key`, naming it by `kid`."""
    header = _encode_json({"alg": ALGORITHM, "kid": kid, "typ": "JWT"})
    signing_input = header + b"." + _encode_json(claims)
    signature = hmac.new(key, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + _b64encode(signature)).decode("ascii")


def verify(
    token: str,
    keys: Mapping[str, bytes],
    *,
    audience: str,
    issuer: str,
    leeway_s: float,
    required: tuple[str, ...] = ("exp", "sub", "aud", "iss"),
) -> tuple[dict[str, Any], str | None]:
    """The claims of `token` and the `kid` it named, if one of `keys` (by kid) signed it
    and its claims hold for `audience` and `issuer` now; else InvalidToken (ExpiredToken
    when only its time has passed). A token naming no kid is tried with every key."""
    try:
        raw = token.encode("ascii")
    except UnicodeEncodeError:
        raise InvalidToken("not ascii") from None
    parts = raw.split(b".")
    if len(parts) != 3:
        raise InvalidToken("not three segments")
    header_b64, payload_b64, signature_b64 = parts
    header = _decode_json(header_b64)
    if header.get("alg") != ALGORITHM:
        raise InvalidToken("not HS256")
    if "crit" in header:  # extensions the verifier must understand: we know none
        raise InvalidToken("critical header extension")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise InvalidToken("kid is not a string")
    if not kid:  # the previous release's tokens name no key
        candidates = list(keys.values())
    else:
        candidates = [keys[kid]] if kid in keys else []
    signature = _b64decode(signature_b64)
    signing_input = header_b64 + b"." + payload_b64
    if not any(
        hmac.compare_digest(hmac.new(key, signing_input, hashlib.sha256).digest(), signature)
        for key in candidates
    ):
        raise InvalidToken("signature")
    claims = _decode_json(payload_b64)
    _check_claims(claims, audience, issuer, leeway_s, required)
    return claims, kid


def _check_claims(
    claims: dict[str, Any], audience: str, issuer: str, leeway_s: float, required: tuple
) -> None:
    for name in required:
        if claims.get(name) is None:
            raise InvalidToken(f"{name} missing")
    now = time.time()
    for name in ("exp", "iat", "nbf"):  # JSON allows NaN, which no comparison would expire
        value = claims.get(name)
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise InvalidToken(f"{name} is not a number")
    if "exp" in claims and claims["exp"] <= now - leeway_s:
        raise ExpiredToken("expired")
    for name in ("iat", "nbf"):  # not yet valid
        if name in claims and claims[name] > now + leeway_s:
            raise InvalidToken(f"{name} in the future")
    aud = claims.get("aud")
    if not (aud == audience or (isinstance(aud, list) and audience in aud)):
        raise InvalidToken("audience")
    if claims.get("iss") != issuer:
        raise InvalidToken("issuer")


def _encode_json(value: Mapping[str, Any]) -> bytes:
    return _b64encode(json.dumps(value, separators=(",", ":")).encode())


def _decode_json(segment: bytes) -> dict[str, Any]:
    try:
        value = json.loads(_b64decode(segment))
    except (UnicodeDecodeError, ValueError):
        raise InvalidToken("not JSON") from None
    if not isinstance(value, dict):
        raise InvalidToken("not a JSON object")
    return value


def _b64encode(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _b64decode(segment: bytes) -> bytes:
    """Unpadded base64url, canonical only: one token has one spelling."""
    if not _SEGMENT.fullmatch(segment) or len(segment) % 4 == 1:
        raise InvalidToken("not base64url")
    try:
        data = base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4))
    except binascii.Error:
        raise InvalidToken("not base64url") from None
    if _b64encode(data) != segment:
        raise InvalidToken("not canonical base64url")
    return data
