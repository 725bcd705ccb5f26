"""The internal credentials' token codec: strict, and interchangeable with PyJWT's HS256."""

from __future__ import annotations

import base64
import json
import time
import warnings

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rag_common.security import hs256

KEY, OTHER = b"k" * 40, b"o" * 40
KEYS = {"kid-1": KEY}
CHECKS = {"audience": "retrieval", "issuer": "rag", "leeway_s": 5.0}


def claims(**changes) -> dict:
    now = time.time()
    return {"iss": "rag", "sub": "query", "aud": "retrieval", "iat": int(now), "exp": now + 30} | (
        changes
    )


def segment(value: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def hs512(value: dict) -> str:
    """`value` signed with our key, but HS512 (PyJWT warns the key is short for it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return jwt.encode(value, KEY, algorithm="HS512", headers={"kid": "kid-1"})


def test_a_signed_token_verifies_and_names_its_key():
    token = hs256.sign(claims(method="/m"), KEY, "kid-1")
    verified, kid = hs256.verify(token, KEYS, **CHECKS)
    assert verified["method"] == "/m" and kid == "kid-1"


def test_tokens_interchange_with_pyjwt_both_ways():
    """Pods of the previous release sign and verify with PyJWT; a rolling upgrade mixes them."""
    ours = hs256.sign(claims(), KEY, "kid-1")
    assert jwt.decode(ours, KEY, algorithms=["HS256"], audience="retrieval", issuer="rag")
    theirs = jwt.encode(claims(), KEY, algorithm="HS256")  # the previous release: no kid
    verified, kid = hs256.verify(theirs, {"kid-1": OTHER, "kid-2": KEY}, **CHECKS)
    assert verified["sub"] == "query" and kid is None


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: hs256.sign(claims(), OTHER, "kid-1"), id="signed with another key"),
        pytest.param(lambda: hs256.sign(claims(), KEY, "kid-9"), id="names a key we do not hold"),
        pytest.param(
            lambda: hs256.sign(claims(aud="generation"), KEY, "kid-1"), id="other audience"
        ),
        pytest.param(
            lambda: hs256.sign(claims(aud=["generation"]), KEY, "kid-1"), id="audience list"
        ),
        pytest.param(lambda: hs256.sign(claims(iss="evil"), KEY, "kid-1"), id="other issuer"),
        pytest.param(
            lambda: hs256.sign({k: v for k, v in claims().items() if k != "sub"}, KEY, "kid-1"),
            id="no subject",
        ),
        pytest.param(
            lambda: hs256.sign(claims(iat=time.time() + 60), KEY, "kid-1"), id="issued later"
        ),
        pytest.param(lambda: hs256.sign(claims(exp="soon"), KEY, "kid-1"), id="exp not a number"),
        pytest.param(lambda: hs256.sign(claims(exp=float("nan")), KEY, "kid-1"), id="exp NaN"),
        pytest.param(lambda: hs512(claims()), id="HS512"),
        pytest.param(
            lambda: f"{segment({'alg': 'none', 'kid': 'kid-1'})}.{segment(claims())}.",
            id="alg none",
        ),
        pytest.param(
            lambda: jwt.encode(
                claims(), KEY, algorithm="HS256", headers={"kid": "kid-1", "crit": ["x"]}
            ),
            id="critical extension",
        ),
        pytest.param(lambda: "a.b", id="two segments"),
        pytest.param(lambda: "", id="empty"),
        pytest.param(lambda: "é.é.é", id="not ascii"),
    ],
)
def test_what_is_not_a_valid_token_of_ours_is_refused(make):
    # Made now, not at collection: a token made then may have expired by the time it runs.
    with pytest.raises(hs256.InvalidToken) as refused:
        hs256.verify(make(), KEYS, **CHECKS)
    assert not isinstance(refused.value, hs256.ExpiredToken)


def test_an_expired_token_says_so_after_the_leeway():
    assert hs256.verify(hs256.sign(claims(exp=time.time() - 2), KEY, "kid-1"), KEYS, **CHECKS)
    with pytest.raises(hs256.ExpiredToken):
        hs256.verify(hs256.sign(claims(exp=time.time() - 6), KEY, "kid-1"), KEYS, **CHECKS)


def test_a_changed_payload_fails_the_signature():
    header, _, signature = hs256.sign(claims(), KEY, "kid-1").split(".")
    forged = f"{header}.{segment(claims(sub='admin'))}.{signature}"
    with pytest.raises(hs256.InvalidToken, match="signature"):
        hs256.verify(forged, KEYS, **CHECKS)


TOKEN = hs256.sign(claims(exp=time.time() + 86_400), KEY, "kid-1")
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ "


@given(st.integers(0, len(TOKEN) - 1), st.sampled_from(ALPHABET))
def test_no_one_character_change_of_a_token_verifies(position, character):
    changed = TOKEN[:position] + character + TOKEN[position + 1 :]
    if changed == TOKEN:
        return
    with pytest.raises(hs256.InvalidToken):
        hs256.verify(changed, KEYS, **CHECKS)
