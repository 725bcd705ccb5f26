"""Domain types of the generation service."""

from __future__ import annotations

from dataclasses import dataclass, field

from rag_common.domain import ScoredChunk


@dataclass(frozen=True)
class GenerationRequest:
    """What to answer and from what."""

    question: str
    sources: tuple[ScoredChunk, ...] = ()
    max_tokens: int = 0
    provider: str = ""


@dataclass(frozen=True)
class Prompt:
    """A prompt packed for one provider: chat messages plus what went into them."""

    messages: list[dict[str, str]]
    question: str
    sources: tuple[ScoredChunk, ...]  # the sources that fitted, numbered from 1
    max_tokens: int

    @property
    def text(self) -> str:
        """All message contents together, for counting or estimating input tokens."""
        return "".join(m["content"] for m in self.messages)


@dataclass(frozen=True)
class Usage:
    """Tokens a generation consumed (the provider's own count where it reports one)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


@dataclass(frozen=True)
class Completion:
    """What a provider returned for one prompt."""

    text: str
    usage: Usage


@dataclass(frozen=True)
class Generation:
    """A finished (or, for an interrupted stream, partial) answer and who wrote it."""

    text: str
    provider: str
    sources_used: int
    failed_providers: list[str] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    cited_sources: list[int] = field(default_factory=list)
    tier: str = "main"
    partial: bool = False
