"""The query pipeline with every stage in this process: the yardstick gRPC is compared to."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from rag_common.domain import ScoredChunk
from rag_common.security.identity import Identity
from rag_generation.generator import Generator, StreamEnd
from rag_generation.models import Generation, GenerationRequest
from rag_query.models import GeneratedText, QueryOptions, RetrievedContext
from rag_retrieval.models import RetrieveQuery
from rag_retrieval.retriever import Retriever


class LocalRetriever:
    """The Retriever core as the query engine's ContextRetriever."""

    def __init__(self, retriever: Retriever) -> None:
        self._retriever = retriever

    async def retrieve(
        self, question: str, vector: Sequence[float], options: QueryOptions, identity: Identity
    ) -> RetrievedContext:
        """Search in-process."""
        query = RetrieveQuery(
            text=question,
            vector=tuple(vector),
            top_k=options.top_k,
            conditions=options.conditions,
            score_threshold=options.score_threshold,
            mode=options.search_mode,
            rerank=options.rerank,
        )
        result = await self._retriever.retrieve(query, identity)
        return RetrievedContext(result.chunks, result.degraded)


def generated_text(generation: Generation) -> GeneratedText:
    """A Generation as the query core's GeneratedText."""
    return GeneratedText(
        text=generation.text,
        provider=generation.provider,
        input_tokens=generation.usage.input_tokens,
        output_tokens=generation.usage.output_tokens,
        cost_usd=generation.usage.cost_usd,
        cited_sources=tuple(generation.cited_sources),
        partial=generation.partial,
    )


class LocalGenerator:
    """The Generator core as the query engine's AnswerGenerator."""

    def __init__(self, generator: Generator) -> None:
        self._generator = generator

    async def generate(
        self,
        question: str,
        sources: Sequence[ScoredChunk],
        options: QueryOptions,
        identity: Identity,
    ) -> GeneratedText:
        """Generate in-process."""
        generation = await self._generator.generate(self._request(question, sources, options))
        return generated_text(generation)

    async def stream(
        self,
        question: str,
        sources: Sequence[ScoredChunk],
        options: QueryOptions,
        identity: Identity,
    ) -> AsyncIterator[str | GeneratedText]:
        """Stream in-process."""
        async for item in self._generator.stream(self._request(question, sources, options)):
            if isinstance(item, StreamEnd):
                yield generated_text(item.generation)
            else:
                yield item

    @staticmethod
    def _request(question, sources, options) -> GenerationRequest:
        return GenerationRequest(question, tuple(sources), options.max_tokens, options.provider)
