"""Which providers to try for a question, and in what order."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from rag_common.breaker import CircuitBreaker
from rag_generation.config import ProviderConfig
from rag_generation.providers import ChatModel


@dataclass
class Route:
    """A configured provider at run time: its settings, its adapter and its breaker."""

    config: ProviderConfig
    model: ChatModel
    breaker: CircuitBreaker

    @property
    def name(self) -> str:
        """The provider's configured name."""
        return self.config.name


@dataclass(frozen=True)
class TieringRule:
    """Sends short questions without a complex word to the cheaper 'small' tier."""

    max_simple_chars: int = 0  # 0: everything is 'main'
    complex_words: tuple[str, ...] = ()

    def tier(self, question: str) -> str:
        """'small' or 'main'."""
        if not self.max_simple_chars or len(question) > self.max_simple_chars:
            return "main"
        words = re.findall(r"[a-z]+", question.lower())
        if any(w.startswith(prefix) for w in words for prefix in self.complex_words):
            return "main"
        return "small"


def plan(
    routes: Sequence[Route], *, tier: str, preferred: str = "", rng: random.Random
) -> list[Route]:
    """Every route in the order to try them.

    The caller's preferred provider first; then the question's tier, then the other tier,
    each in a weighted random order (a provider with twice the weight comes first twice as
    often); last the weight-0 fallbacks in configured order.
    """
    first = [r for r in routes if r.name == preferred]
    rest = [r for r in routes if r.name != preferred]
    weighted_tier = [r for r in rest if r.config.weight > 0 and r.config.tier == tier]
    weighted_other = [r for r in rest if r.config.weight > 0 and r.config.tier != tier]
    fallbacks = [r for r in rest if r.config.weight == 0]
    return (
        first
        + _weighted_order(weighted_tier, rng)
        + _weighted_order(weighted_other, rng)
        + (fallbacks)
    )


def _weighted_order(routes: list[Route], rng: random.Random) -> list[Route]:
    # Efraimidis-Spirakis: sorting by u^(1/w) draws a weighted permutation in one pass, so
    # the first element is route i with probability w_i / sum(w).
    return sorted(routes, key=lambda r: rng.random() ** (1.0 / r.config.weight), reverse=True)
