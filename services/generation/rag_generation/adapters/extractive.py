"""The extractive provider: no model, the source sentences that best match the question."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import AsyncIterator

from rag_generation.models import Completion, Prompt, Usage
from rag_generation.prompt import estimate_tokens

_WORD = re.compile(r"[a-z0-9]+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n\s*\n|\n(?=\s*[-*#>|])")
_SPACES = re.compile(r"\s+")
_STOPWORDS = frozenset(
    "a an and are as at be by can do does for from how i in is it its of on or that the "
    "this to was what when where which who why will with you your".split()
)
_FENCE = re.compile(r"^\s*(```|~~~)")
_PROMPT = re.compile(r"^\s*(\$|%|>>>|\.\.\.|#!|[A-Za-z0-9_.-]+[@:][^ ]*[$#])\s")
_TABLE = re.compile(r"^\s*[+|].*[+|]\s*$|^\s*[=+|:\- ]{3,}\s*$|\|.*\|")
_HEADING = re.compile(r"^\s*#{1,6}\s")
# A line with an option flag or a path and no sentence ending is a command, not prose.
_COMMAND = re.compile(r"(^|\s)(--?[A-Za-z]|\./|~/|/usr/|\|\s|&&|>\s?/)")
_SENTENCE_ENDING = re.compile(r"[.!?:;,]\s*$")
_MAX_SENTENCES = 3
_MAX_SENTENCE_CHARS = 400
NO_SOURCES_ANSWER = "I could not find anything about this in your documents."


def prose(text: str) -> str:
    """`text` without what should never be quoted as an answer's sentence: fenced and
    indented code, shell and REPL lines, commands, tables and headings."""
    kept: list[str] = []
    in_fence = False
    for line in text.split("\n"):
        if _FENCE.match(line):
            in_fence = not in_fence
            kept.append("")
            continue
        # Indented after a blank or a dropped line: a code block, not a wrapped paragraph.
        indented = line.startswith(("    ", "\t")) and (not kept or kept[-1] == "")
        if in_fence or indented or _not_prose(line):
            kept.append("")  # a paragraph break: sentences never join across the gap
        else:
            kept.append(line)
    return "\n".join(kept)


def _not_prose(line: str) -> bool:
    if _PROMPT.match(line) or _TABLE.search(line) or _HEADING.match(line):
        return True
    return bool(_COMMAND.search(line)) and not _SENTENCE_ENDING.search(line)


def _terms(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS and len(w) > 1]


class ExtractiveModel:
    """Answers with up to three source sentences sharing most rare terms with the question.

    Always available and instant, which makes it the last resort when every LLM is down and
    the provider to benchmark the pipeline without model cost.
    """

    context_window = 1_000_000

    def __init__(self, name: str = "extractive") -> None:
        self.name = name

    def count_tokens(self, text: str) -> int:
        """An estimate: this provider has no tokenizer and no real window."""
        return estimate_tokens(text)

    async def start(self) -> None:
        """Nothing to load."""

    async def close(self) -> None:
        """Nothing to release."""

    async def complete(self, prompt: Prompt, timeout_s: float = 0) -> Completion:
        """The chosen sentences, each followed by its citation."""
        text = " ".join(self._sentences(prompt))
        return Completion(text, self._usage(prompt, text))

    async def stream(self, prompt: Prompt, timeout_s: float = 0) -> AsyncIterator[str | Usage]:
        """One sentence at a time, then the (estimated) usage."""
        sentences = self._sentences(prompt)
        for i, sentence in enumerate(sentences):
            yield sentence if i == 0 else " " + sentence
        yield self._usage(prompt, " ".join(sentences))

    @staticmethod
    def _usage(prompt: Prompt, text: str) -> Usage:
        read = sum(estimate_tokens(chunk.text) for chunk in prompt.sources)
        return Usage(read + estimate_tokens(prompt.question), estimate_tokens(text))

    def _sentences(self, prompt: Prompt) -> list[str]:
        if not prompt.sources:
            return [NO_SOURCES_ANSWER]
        candidates = [
            (number, _SPACES.sub(" ", sentence).strip())
            for number, chunk in enumerate(prompt.sources, start=1)
            for sentence in _SENTENCE_END.split(prose(chunk.text))
            if len(sentence.strip()) >= 12
        ]
        question = set(_terms(prompt.question))
        terms = [set(_terms(sentence)) for _, sentence in candidates]  # each sentence once
        document_frequency = Counter(t for sentence_terms in terms for t in sentence_terms)
        total = len(candidates) or 1

        def score(number: int, sentence_terms: set[str]) -> float:
            rarity = sum(
                math.log(1 + total / document_frequency[t]) for t in question & sentence_terms
            )
            return rarity / (1 + 0.1 * (number - 1))  # earlier sources ranked better

        scores = [score(number, t) for (number, _), t in zip(candidates, terms, strict=True)]
        # Best first; among equals, the earlier sentence (sorted is stable).
        order = sorted(range(len(candidates)), key=lambda i: -scores[i])
        ranked = [candidates[i] for i in order if scores[i] > 0]
        chosen = ranked[:_MAX_SENTENCES] or candidates[:1]
        if not chosen:  # the sources hold no prose at all: quote the best one as it is
            return [f"{prompt.sources[0].text[:_MAX_SENTENCE_CHARS]} [1]"]
        return [f"{_shorten(sentence)} [{number}]" for number, sentence in chosen]


def _shorten(sentence: str) -> str:
    if len(sentence) <= _MAX_SENTENCE_CHARS:
        return sentence
    return sentence[: _MAX_SENTENCE_CHARS - 1].rstrip() + "…"
