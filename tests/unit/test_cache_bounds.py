"""Every cache that can serve content is bounded in bytes (or, for vectors, in all entries)."""

from __future__ import annotations

import numpy as np

from rag_common.cache.local import LocalTTLCache, byte_length
from rag_common.domain import ScoredChunk
from rag_query.engine import sources_size
from rag_query.semantic_cache import SemanticCache


def test_large_values_are_evicted_by_weight_not_by_count():
    cache = LocalTTLCache(10_000, 60.0, max_bytes=1_000, size_of=byte_length)
    for n in range(50):
        cache.put(n, b"x" * 300)  # 50 answers of 300 bytes: only three fit in 1,000
    assert cache.bytes <= 1_000 and len(cache) == 3
    assert cache.get(49) is not None and cache.get(0) is None
    cache.put("huge", b"x" * 5_000)  # heavier than the whole bound: not kept, nothing lost
    assert cache.get("huge") is None and len(cache) == 3
    cache.put(49, b"y")  # replacing a value re-weighs it
    assert cache.bytes == 601


def test_expired_values_stop_counting():
    now = [0.0]
    cache = LocalTTLCache(10, 1.0, max_bytes=100, size_of=byte_length, clock=lambda: now[0])
    cache.put("a", b"x" * 60)
    now[0] = 2.0
    assert cache.get("a") is None and cache.bytes == 0


def test_retrievals_weigh_what_their_chunks_carry():
    light = [ScoredChunk("d", 0, 0.5, "short")]
    heavy = [ScoredChunk("d", i, 0.5, "t" * 800, metadata={"k": "v" * 256}) for i in range(50)]
    assert sources_size(heavy) > 50 * 1_000 > sources_size(light)


def test_the_semantic_cache_is_bounded_over_all_scopes_oldest_scope_first():
    cache = SemanticCache(max_per_scope=100, max_entries=250)
    for version in range(10):  # a tenant whose corpus version moved ten times
        for n in range(50):
            cache.add(("acme", version), f"question {n}", [1.0, float(n)], f"answer {n}")
    assert len(cache) <= 250
    assert cache.lookup(("acme", 9), "question 3", [1.0, 3.0]) is not None  # newest kept
    assert cache.lookup(("acme", 0), "question 3", [1.0, 3.0]) is None  # oldest gone


def test_a_semantic_lookup_guards_only_the_closest_few_candidates(monkeypatch):
    from rag_query import semantic_cache

    checked = []
    monkeypatch.setattr(semantic_cache, "same_question", lambda a, b: checked.append(b) or False)
    cache = semantic_cache.SemanticCache(threshold=0.5)
    for n in range(500):  # all alike, as questions written from one template are
        cache.add("scope", f"What are the limits in case {n}?", [1.0, n / 10_000], f"k{n}")
    assert cache.lookup("scope", "What are the limits in case 9999?", [1.0, 0.0]) is None
    assert len(checked) == semantic_cache.GUARDED_CANDIDATES
    assert checked[0] == "What are the limits in case 0?"  # the most similar first


def test_a_scope_refilled_many_times_over_finds_exactly_its_newest_entries():
    vectors = np.random.default_rng(7).normal(size=(1_000, 64)).tolist()  # all far apart
    clock = [0.0]
    cache = SemanticCache(ttl_s=50, max_per_scope=100, clock=lambda: clock[0])
    for n in range(1_000):  # its vectors are moved and regrown many times meanwhile
        clock[0] = n / 10
        cache.add("s", f"question {n}", vectors[n], f"k{n}")
    assert len(cache) == 100
    for n in (900, 950, 999):
        assert cache.lookup("s", f"question {n}", vectors[n]).answer_key == f"k{n}"
    assert cache.lookup("s", "question 899", vectors[899]) is None  # dropped for room
    clock[0] = 99.5 + 50  # entries added before 99.5 have expired
    assert cache.lookup("s", "question 990", vectors[990]) is None
    assert cache.lookup("s", "question 999", vectors[999]).answer_key == "k999"
    assert len(cache) == 4  # 996 to 999


def test_entries_expire_and_each_scope_is_bounded():
    clock = [0.0]
    cache = SemanticCache(ttl_s=10, max_per_scope=2, clock=lambda: clock[0])
    cache.add("s", "How do I reset my password?", [1.0, 0.0], "k1")
    assert cache.lookup("s", "How can I reset my password?", [1.0, 0.0]).answer_key == "k1"
    assert cache.lookup("other scope", "How can I reset my password?", [1.0, 0.0]) is None
    clock[0] = 11
    assert cache.lookup("s", "How can I reset my password?", [1.0, 0.0]) is None
    for i in range(3):
        cache.add("s", f"question {i}", [1.0, 0.0], f"k{i}")
    assert cache.lookup("s", "question 0", [1.0, 0.0]) is None  # the oldest was dropped
    assert cache.lookup("s", "question 2", [1.0, 0.0]).answer_key == "k2"
