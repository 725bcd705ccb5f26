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


@dataclass(frozen=True)
class Generation:
    """A finished answer and who wrote it."""

    text: str
    provider: str
    sources_used: int
    failed_providers: list[str] = field(default_factory=list)
