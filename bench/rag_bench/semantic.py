"""The semantic cache on the hand-labelled question pairs (bench/data/semantic_eval_pairs.jsonl):
paraphrase hit rate and false-hit rate with 95 % intervals, threshold by threshold."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rag_query.semantic_cache import SemanticCache

PAIRS_FILE = Path(__file__).parents[1] / "data" / "semantic_eval_pairs.jsonl"
THRESHOLDS = (0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


@dataclass(frozen=True)
class Pair:
    """Two questions, and whether one's answer answers the other."""

    cached: str
    asked: str
    same: bool
    kind: str  # "paraphrase", "reversal" (same words, other roles) or "different"
    split: str  # "tune" (choose settings on it) or "test" (report, never tune)


@dataclass(frozen=True)
class Rates:
    """Outcomes at one threshold on one split."""

    threshold: float
    paraphrase_hits: int
    paraphrases: int
    false_hits: int
    negatives: int
    false_pairs: tuple[tuple[str, str], ...]

    def line(self) -> str:
        """One row of the bench's table."""
        hit = wilson(self.paraphrase_hits, self.paraphrases)
        false = wilson(self.false_hits, self.negatives)
        return (
            f"  {self.threshold:.2f}  paraphrases hit {self.paraphrase_hits:3}/"
            f"{self.paraphrases} = {self.paraphrase_hits / self.paraphrases:5.1%} "
            f"[{hit[0]:.0%}, {hit[1]:.0%}]   false hits {self.false_hits}/{self.negatives} "
            f"[{false[0]:.1%}, {false[1]:.1%}]"
        )


def load_pairs(split: str) -> list[Pair]:
    """The labelled pairs of one split."""
    rows = [json.loads(line) for line in PAIRS_FILE.read_text().splitlines() if line.strip()]
    return [
        Pair(r["a"], r["b"], r["same"], r["kind"], r["split"]) for r in rows if r["split"] == split
    ]


def wilson(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95 % by default)."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    spread = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    spread /= 1 + z * z / trials
    return max(0.0, centre - spread), min(1.0, centre + spread)


async def embed_pairs(embedder, pairs: Sequence[Pair]) -> list[list[float]]:
    """Each pair's cached then asked question, embedded in batches the embedder accepts."""
    texts = [t for p in pairs for t in (p.cached, p.asked)]
    vectors: list[list[float]] = []
    for start in range(0, len(texts), 128):
        vectors.extend(await embedder.embed(texts[start : start + 128], "query"))
    return vectors


async def rates(embedder, pairs: Sequence[Pair], thresholds=THRESHOLDS) -> list[Rates]:
    """Each pair through a real SemanticCache at each threshold: the cached question is
    stored, the asked one looked up."""
    vectors = await embed_pairs(embedder, pairs)
    results = []
    for threshold in thresholds:
        hits, false_pairs = 0, []
        for number, pair in enumerate(pairs):
            cache = SemanticCache(threshold=threshold)
            cache.add("scope", pair.cached, vectors[2 * number], "key")
            hit = cache.lookup("scope", pair.asked, vectors[2 * number + 1]) is not None
            if hit and pair.same:
                hits += 1
            elif hit:
                false_pairs.append((pair.cached, pair.asked))
        paraphrases = sum(p.same for p in pairs)
        results.append(
            Rates(
                threshold,
                hits,
                paraphrases,
                len(false_pairs),
                len(pairs) - paraphrases,
                tuple(false_pairs),
            )
        )
    return results
