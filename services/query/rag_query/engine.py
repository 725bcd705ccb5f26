"""The query core: validate, embed the question once, retrieve, generate, time each stage."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

from rag_common import context
from rag_common.domain import ScoredChunk, TextEmbedder
from rag_common.errors import InvalidArgument
from rag_common.filters import check_conditions
from rag_common.identity import Identity
from rag_query.models import Answer, GeneratedText, Question, Timings
from rag_query.ports import AnswerGenerator, ContextRetriever

MAX_TOKENS_LIMIT = 4096


@dataclass(frozen=True)
class SourcesFound:
    """First event of a streamed answer: the sources it is written from."""

    sources: list[ScoredChunk]


class QueryEngine:
    """Answers a question over the caller's documents."""

    def __init__(
        self,
        embedder: TextEmbedder,
        retriever: ContextRetriever,
        generator: AnswerGenerator,
        *,
        max_question_chars: int,
        default_top_k: int,
        max_top_k: int,
    ) -> None:
        self._embedder = embedder
        self._retriever = retriever
        self._generator = generator
        self._max_question_chars = max_question_chars
        self._default_top_k = default_top_k
        self._max_top_k = max_top_k

    async def answer(self, question: Question, identity: Identity) -> Answer:
        """The answer, its sources and where the time went."""
        started = time.perf_counter()
        sources, embed_ms, retrieve_ms = await self._find_sources(question, identity)
        generate_started = time.perf_counter()
        generated = await self._generator.generate(question.text, sources, question.options)
        return self._finish(generated, sources, started, embed_ms, retrieve_ms, generate_started)

    async def stream(
        self, question: Question, identity: Identity
    ) -> AsyncIterator[SourcesFound | str | Answer]:
        """SourcesFound, then pieces of the answer, then the whole Answer."""
        started = time.perf_counter()
        sources, embed_ms, retrieve_ms = await self._find_sources(question, identity)
        yield SourcesFound(sources)
        generate_started = time.perf_counter()
        async for item in self._generator.stream(question.text, sources, question.options):
            if isinstance(item, GeneratedText):
                yield self._finish(item, sources, started, embed_ms, retrieve_ms, generate_started)
            else:
                yield item

    async def _find_sources(
        self, question: Question, identity: Identity
    ) -> tuple[list[ScoredChunk], float, float]:
        self._validate(question)
        started = time.perf_counter()
        [vector] = await self._embedder.embed([question.text], "query")
        embedded = time.perf_counter()
        options = question.options
        if not options.top_k:
            options = replace(options, top_k=self._default_top_k)
        sources = await self._retriever.retrieve(question.text, vector, options, identity)
        retrieved = time.perf_counter()
        return sources, (embedded - started) * 1000, (retrieved - embedded) * 1000

    @staticmethod
    def _finish(
        generated: GeneratedText,
        sources: list[ScoredChunk],
        started: float,
        embed_ms: float,
        retrieve_ms: float,
        generate_started: float,
    ) -> Answer:
        now = time.perf_counter()
        timings = Timings(
            embed_ms=embed_ms,
            retrieve_ms=retrieve_ms,
            generate_ms=(now - generate_started) * 1000,
            total_ms=(now - started) * 1000,
        )
        return Answer(generated.text, sources, generated, timings, context.request_id())

    def _validate(self, question: Question) -> None:
        if not question.text.strip():
            raise InvalidArgument("question", "must not be empty")
        if len(question.text) > self._max_question_chars:
            raise InvalidArgument(
                "question",
                f"{len(question.text)} characters, at most {self._max_question_chars}",
            )
        options = question.options
        if not 0 <= options.top_k <= self._max_top_k:
            raise InvalidArgument(
                "options.top_k", f"must be between 1 and {self._max_top_k} (0 for the default)"
            )
        check_conditions(options.conditions, "options.filters")
        threshold = options.score_threshold
        if threshold is not None and not -1.0 <= threshold <= 1.0:
            raise InvalidArgument("options.score_threshold", "must be between -1 and 1")
        if not 0 <= options.max_tokens <= MAX_TOKENS_LIMIT:
            raise InvalidArgument("options.max_tokens", f"must be between 0 and {MAX_TOKENS_LIMIT}")
