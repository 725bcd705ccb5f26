"""The semantic cache on a labelled set of paraphrases and near misses, with the real model."""

from __future__ import annotations

from rag_bench.semantic import embed_pairs, load_pairs, rates
from rag_query.config import QuerySettings
from rag_query.semantic_cache import SemanticCache, same_question

THRESHOLD = QuerySettings().semantic_cache_threshold


def test_the_labelled_set_has_both_halves_and_enough_reversals():
    for split in ("tune", "test"):
        pairs = load_pairs(split)
        assert len(pairs) >= 150
        assert sum(p.kind == "reversal" for p in pairs) >= 25
        assert sum(p.same for p in pairs) >= 70


async def test_no_pair_of_the_test_half_is_a_false_hit_at_any_threshold(embedder):
    for row in await rates(embedder, load_pairs("test")):
        assert row.false_pairs == (), row.threshold


async def test_the_default_threshold_serves_paraphrases_of_the_test_half(embedder):
    [row] = await rates(embedder, load_pairs("test"), thresholds=(THRESHOLD,))
    # Measured 34 % (26/77) here: below the 60 % aimed for, reported rather than tuned on.
    assert row.paraphrase_hits / row.paraphrases >= 0.3


async def test_similarity_alone_would_give_false_hits(embedder):
    # Why the guard exists: at the default threshold, similarity lets most negatives through.
    pairs = [p for p in load_pairs("test") if not p.same]
    vectors = await embed_pairs(embedder, pairs)
    leaked = sum(
        sum(x * y for x, y in zip(vectors[2 * i], vectors[2 * i + 1], strict=True)) >= THRESHOLD
        for i in range(len(pairs))
    )
    assert leaked > len(pairs) / 2
    assert not any(same_question(p.cached, p.asked) for p in pairs)


# Same words, other roles: each pair is nearly identical to the model (0.95 to 0.995) and
# must never share an answer. Written by hand from the cases users reported.
SWAPPED_ROLES = [
    ("How do I convert a string to a number?", "How do I convert a number to a string?"),
    ("Who reports to Alice?", "Who does Alice report to?"),
    (
        "How long is the flight from Paris to London?",
        "How long is the flight from London to Paris?",
    ),
    (
        "How do I move money from savings to checking?",
        "How do I move money from checking to savings?",
    ),
    (
        "Can I upgrade from the free plan to the team plan?",
        "Can I upgrade from the team plan to the free plan?",
    ),
    ("Is Postgres faster than MySQL?", "Is MySQL faster than Postgres?"),
    ("Does Alice manage Bob?", "Does Bob manage Alice?"),
    ("How do I migrate from Python 2 to Python 3?", "How do I migrate to Python 2 from Python 3?"),
]
# ...while a "to" that only frames the question changes nothing.
SAME_ROLES = [
    ("What is the way to convert a string to a number?", "How do I convert a string to a number?"),
    (
        "Is it possible to move money to my savings account?",
        "Can I move money to my savings account?",
    ),
    ("Tell me how to send an invoice to a customer.", "How do I send an invoice to a customer?"),
    # A modifier moved out of a phrase, whichever other word looks out of order then.
    ("How do I delete a branch in git?", "How can I remove a git branch?"),
]


async def test_the_same_words_in_other_roles_never_share_an_answer(embedder):
    for cached, asked in SWAPPED_ROLES:
        cached_vector, asked_vector = await embedder.embed([cached, asked], "query")
        cache = SemanticCache(threshold=0.9)
        cache.add("scope", cached, cached_vector, "key")
        assert cache.lookup("scope", asked, asked_vector) is None, (cached, asked)
    for cached, asked in SAME_ROLES:
        assert same_question(cached, asked), (cached, asked)
