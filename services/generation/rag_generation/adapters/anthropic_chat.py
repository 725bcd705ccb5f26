"""Anthropic messages through the official SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic

from rag_generation.adapters.remote import RemoteChatModel, estimated_usage
from rag_generation.adapters.vendor_errors import translate
from rag_generation.config import ProviderConfig
from rag_generation.models import Completion, Prompt, Usage


class AnthropicChatModel(RemoteChatModel):
    """`kind: anthropic`: Claude models.

    No temperature is sent: current Messages API versions no longer accept one for every
    model, and the provider's default suits grounded answers.
    """

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        self._client = anthropic.AsyncAnthropic(**self.client_options(config))

    def _request(self, prompt: Prompt, timeout_s: float) -> dict[str, Any]:
        # Anthropic takes the system prompt as its own parameter, not as a message.
        system = "\n\n".join(m["content"] for m in prompt.messages if m["role"] == "system")
        return {
            "model": self._model,
            "system": system,
            "messages": [m for m in prompt.messages if m["role"] != "system"],
            "max_tokens": prompt.max_tokens,
            "timeout": timeout_s,
        }

    async def complete(self, prompt: Prompt, timeout_s: float) -> Completion:
        """The whole answer, with the provider's own token counts."""
        try:
            response = await self._client.messages.create(**self._request(prompt, timeout_s))
        except (anthropic.AnthropicError, ValueError) as exc:
            raise translate(anthropic, self.name, exc) from exc
        text = "".join(block.text for block in response.content if block.type == "text")
        return Completion(text, Usage(response.usage.input_tokens, response.usage.output_tokens))

    async def stream(self, prompt: Prompt, timeout_s: float) -> AsyncIterator[str | Usage]:
        """Pieces of text, then the usage reported by message_start and message_delta."""
        input_tokens = output_tokens = 0
        try:
            stream = await self._client.messages.create(
                **self._request(prompt, timeout_s), stream=True
            )
            async with stream:
                async for event in stream:
                    if event.type == "message_start":
                        input_tokens = event.message.usage.input_tokens
                    elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                        yield event.delta.text
                    elif event.type == "message_delta":
                        output_tokens = event.usage.output_tokens
        except (anthropic.AnthropicError, ValueError) as exc:
            raise translate(anthropic, self.name, exc) from exc
        if not input_tokens:
            input_tokens = estimated_usage(prompt, "").input_tokens
        yield Usage(input_tokens, output_tokens)
