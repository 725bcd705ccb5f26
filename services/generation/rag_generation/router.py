"""The generation core: pack the prompt per provider and fall back along the provider list."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from rag_common.errors import InvalidArgument, RagError, Unavailable
from rag_generation.models import Generation, GenerationRequest, Prompt
from rag_generation.prompt import build_prompt
from rag_generation.providers import ChatModel

log = logging.getLogger(__name__)

MAX_QUESTION_CHARS = 4000
MAX_SOURCES = 100
MAX_TOKENS_LIMIT = 4096


@dataclass(frozen=True)
class StreamEnd:
    """Last item of a stream: the summary of the answer just streamed."""

    generation: Generation


class Generator:
    """Tries providers in order until one answers.

    The order is the configured one, with a caller's preferred provider moved to the front.
    A provider that failed to start is left out, so `local` failing to load means
    `extractive` answers, and the response says so.
    """

    def __init__(self, providers: Sequence[ChatModel], *, default_max_tokens: int) -> None:
        if not providers:
            raise ValueError("at least one provider is required")
        self._providers = list(providers)
        self._ready: list[ChatModel] = []
        self._default_max_tokens = default_max_tokens

    @property
    def provider_names(self) -> list[str]:
        """Providers that started, in the order they are tried."""
        return [p.name for p in self._ready]

    async def start(self) -> None:
        """Start every provider; those that fail are skipped, but one must succeed."""
        for provider in self._providers:
            try:
                await provider.start()
                self._ready.append(provider)
            except Exception as exc:
                log.warning("provider unavailable", extra={"provider": provider.name}, exc_info=exc)
        if not self._ready:
            raise RuntimeError("no generation provider could start")
        log.info("providers ready", extra={"providers": self.provider_names})

    async def close(self) -> None:
        """Release every provider."""
        for provider in self._ready:
            await provider.close()

    async def generate(self, request: GenerationRequest) -> Generation:
        """The first answer any provider gives."""
        failed: list[str] = []
        for provider in self._order(request):
            prompt = self._prompt(provider, request)
            try:
                text = await provider.complete(prompt)
            except RagError as exc:
                self._note_failure(provider, exc, failed)
                continue
            return Generation(text, provider.name, len(prompt.sources), failed)
        raise _all_failed(failed)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str | StreamEnd]:
        """Pieces of the answer, then a StreamEnd.

        A provider failing before its first piece is replaced by the next one, unseen by the
        caller; once text has been sent, a failure ends the stream with the error.
        """
        failed: list[str] = []
        for provider in self._order(request):
            prompt = self._prompt(provider, request)
            pieces: list[str] = []
            try:
                async for piece in provider.stream(prompt):
                    pieces.append(piece)
                    yield piece
            except RagError as exc:
                if pieces:
                    raise Unavailable(
                        f"provider {provider.name} failed after answering in part",
                        reason="STREAM_INTERRUPTED",
                        metadata={"provider": provider.name},
                    ) from exc
                self._note_failure(provider, exc, failed)
                continue
            yield StreamEnd(Generation("".join(pieces), provider.name, len(prompt.sources), failed))
            return
        raise _all_failed(failed)

    def _order(self, request: GenerationRequest) -> list[ChatModel]:
        self._validate(request)
        preferred = [p for p in self._ready if p.name == request.provider]
        return preferred + [p for p in self._ready if p.name != request.provider]

    def _prompt(self, provider: ChatModel, request: GenerationRequest) -> Prompt:
        max_tokens = request.max_tokens or self._default_max_tokens
        return build_prompt(
            request.question,
            request.sources,
            context_window=provider.context_window,
            max_tokens=min(max_tokens, provider.context_window // 2),
            count_tokens=provider.count_tokens,
        )

    def _validate(self, request: GenerationRequest) -> None:
        if not request.question.strip():
            raise InvalidArgument("input.question", "must not be empty")
        if len(request.question) > MAX_QUESTION_CHARS:
            raise InvalidArgument("input.question", f"at most {MAX_QUESTION_CHARS} characters")
        if len(request.sources) > MAX_SOURCES:
            raise InvalidArgument("input.sources", f"at most {MAX_SOURCES} sources")
        if not 0 <= request.max_tokens <= MAX_TOKENS_LIMIT:
            raise InvalidArgument("input.max_tokens", f"must be between 0 and {MAX_TOKENS_LIMIT}")
        known = {p.name for p in self._providers}
        if request.provider and request.provider not in known:
            raise InvalidArgument(
                "input.provider", f"unknown provider '{request.provider}'; known: {sorted(known)}"
            )

    @staticmethod
    def _note_failure(provider: ChatModel, exc: RagError, failed: list[str]) -> None:
        log.warning(
            "provider failed, trying the next",
            extra={"provider": provider.name, "reason": exc.reason},
        )
        failed.append(provider.name)


def _all_failed(failed: list[str]) -> Unavailable:
    return Unavailable(
        "every generation provider failed",
        reason="ALL_PROVIDERS_FAILED",
        metadata={"providers": ",".join(failed)},
    )
