"""OpenAI chat completions through the official SDK; with base_url, any compatible server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai

from rag_generation.adapters.vendor_errors import translate
from rag_generation.config import ProviderConfig
from rag_generation.models import Completion, Prompt, Usage
from rag_generation.prompt import estimate_tokens


class OpenAIChatModel:
    """`kind: openai`: OpenAI itself, or vLLM, Ollama, llama.cpp server by `base_url`."""

    def __init__(self, config: ProviderConfig, *, temperature: float) -> None:
        self.name = config.name
        self.context_window = config.context_window
        self._model = config.model
        self._temperature = temperature
        self._client = openai.AsyncOpenAI(
            # Local OpenAI-compatible servers accept any key; the SDK insists on one.
            api_key=config.api_key.get_secret_value() or "unused",
            base_url=config.base_url or None,
            max_retries=0,  # retried once, by the router's policy, bounded by the deadline
            timeout=config.timeout_s,
        )

    def count_tokens(self, text: str) -> int:
        """A safe estimate (no tokenizer files are fetched at run time)."""
        return estimate_tokens(text)

    async def start(self) -> None:
        """Nothing to load; a remote provider's health is judged by its breaker."""

    async def close(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.close()

    async def complete(self, prompt: Prompt, timeout_s: float) -> Completion:
        """The whole answer, with the provider's own token counts."""
        try:
            response = await self._client.chat.completions.create(
                model=self._model,
                messages=prompt.messages,
                max_tokens=prompt.max_tokens,
                temperature=self._temperature,
                timeout=timeout_s,
            )
            text = (response.choices[0].message.content or "") if response.choices else ""
        except (openai.OpenAIError, ValueError) as exc:
            raise translate(openai, self.name, exc) from exc
        usage = response.usage
        if usage is None:
            return Completion(text, _estimate(prompt, text))
        return Completion(text, Usage(usage.prompt_tokens, usage.completion_tokens))

    async def stream(self, prompt: Prompt, timeout_s: float) -> AsyncIterator[str | Usage]:
        """Pieces of text, then the usage the server reports in its last chunk."""
        usage: Usage | None = None
        pieces: list[str] = []
        try:
            stream = await self._client.chat.completions.create(
                model=self._model,
                messages=prompt.messages,
                max_tokens=prompt.max_tokens,
                temperature=self._temperature,
                stream=True,
                stream_options={"include_usage": True},
                timeout=timeout_s,
            )
            async with stream:
                async for chunk in stream:
                    if chunk.usage is not None:
                        usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                    for choice in chunk.choices:
                        if piece := choice.delta.content:
                            pieces.append(piece)
                            yield piece
        except (openai.OpenAIError, ValueError) as exc:
            raise translate(openai, self.name, exc) from exc
        yield usage or _estimate(prompt, "".join(pieces))


def _estimate(prompt: Prompt, text: str) -> Usage:
    prompt_text = "".join(m["content"] for m in prompt.messages)
    return Usage(estimate_tokens(prompt_text), estimate_tokens(text))
