"""What signed identity costs a cache miss: signing and checking one internal credential,
timed in process, times the internal calls a miss makes."""

from __future__ import annotations

import secrets
import time

from rag_bench.stats import Run
from rag_common.security.credentials import Credentials
from rag_common.security.identity import Identity, metadata_dict

INTERNAL_CALLS_PER_MISS = 3  # embedding, retrieval, generation
_ROUNDS = 2000


def summary(miss: Run, hit: Run) -> str:
    """Sign and verify cost per internal call, and per cache miss against the miss p50;
    a cache hit makes no internal call, so signed identity costs it nothing."""
    key = secrets.token_urlsafe(32)
    caller, callee = Credentials(key, "query"), Credentials(key, "retrieval")
    identity = Identity(principal="bench", tenant="bench", roles=frozenset({"reader"}))
    started = time.perf_counter()
    method = "/rag.v1.RetrievalService/Retrieve"
    tokens = [caller.metadata("retrieval", identity, method=method) for _ in range(_ROUNDS)]
    signed = time.perf_counter()
    for token in tokens:
        callee.verify(metadata_dict(token), method)
    verified = time.perf_counter()
    sign_us = (signed - started) / _ROUNDS * 1e6
    verify_us = (verified - signed) / _ROUNDS * 1e6
    per_miss_ms = INTERNAL_CALLS_PER_MISS * (sign_us + verify_us) / 1000
    return (
        f"\nsigned identity: sign {sign_us:.0f} us + verify {verify_us:.0f} us per internal "
        f"call; a cache miss makes {INTERNAL_CALLS_PER_MISS}: {per_miss_ms:.2f} ms of its "
        f"{miss.percentile(50):.2f} ms p50 at c1 ({per_miss_ms / miss.percentile(50):.1%}); "
        f"a cache hit ({hit.percentile(50):.2f} ms) makes none"
    )
