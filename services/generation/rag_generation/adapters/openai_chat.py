"""OpenAI chat completions through the official SDK; with base_url, any compatible server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai

from rag_generation.adapters.remote import RemoteChatModel, estimated_usage
from rag_generation.adapters.vendor_errors import translate
from rag_generation.config import ProviderConfig
from rag_generation.models import Completion, Prompt, Usage


class OpenAIChatModel(RemoteChatModel):
    """`kind: openai`: OpenAI itself, or vLLM, Ollama, llama.cpp server by `base_url`."""

    def __init__(self, config: ProviderConfig, *, temperature: float) -> None:
        super().__init__(config)
        self._temperature = temperature
        self._client = openai.AsyncOpenAI(**self.client_options(config))

    def _request(self, prompt: Prompt, timeout_s: float) -> dict[str, Any]:
        return {
            "model": self._model,
            "messages": prompt.messages,
            "max_tokens": prompt.max_tokens,
            "temperature": self._temperature,
            "timeout": timeout_s,
        }

    async def complete(self, prompt: Prompt, timeout_s: float) -> Completion:
        """The whole answer, with the provider's own token counts."""
        try:
            response = await self._client.chat.completions.create(
                **self._request(prompt, timeout_s)
            )
            text = (response.choices[0].message.content or "") if response.choices else ""
        except (openai.OpenAIError, ValueError) as exc:
            raise translate(openai, self.name, exc) from exc
        usage = response.usage
        if usage is None:
            return Completion(text, estimated_usage(prompt, text))
        return Completion(text, Usage(usage.prompt_tokens, usage.completion_tokens))

    async def stream(self, prompt: Prompt, timeout_s: float) -> AsyncIterator[str | Usage]:
        """Pieces of text, then the usage the server reports in its last chunk."""
        usage: Usage | None = None
        pieces: list[str] = []
        try:
            stream = await self._client.chat.completions.create(
                **self._request(prompt, timeout_s),
                stream=True,
                stream_options={"include_usage": True},
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
        yield usage or estimated_usage(prompt, "".join(pieces))
