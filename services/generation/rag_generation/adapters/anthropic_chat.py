"""Anthropic messages through the official SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anthropic

from rag_generation.adapters.vendor_errors import translate
from rag_generation.config import ProviderConfig
from rag_generation.models import Completion, Prompt, Usage
from rag_generation.prompt import estimate_tokens


def _split_system(prompt: Prompt) -> tuple[str, list[dict[str, str]]]:
    # Anthropic takes the system prompt as its own parameter, not as a message.
    system = "\n\n".join(m["content"] for m in prompt.messages if m["role"] == "system")
    return system, [m for m in prompt.messages if m["role"] != "system"]


class AnthropicChatModel:
    """`kind: anthropic`: Claude models."""

    def __init__(self, config: ProviderConfig) -> None:
        # No temperature: current Messages API versions no longer accept one for every
        # model, and the provider's default suits grounded answers.
        self.name = config.name
        self.context_window = config.context_window
        self._model = config.model
        self._client = anthropic.AsyncAnthropic(
            api_key=config.api_key.get_secret_value() or "unused",
            base_url=config.base_url or None,
            max_retries=0,  # retried once, by the router's policy, bounded by the deadline
            timeout=config.timeout_s,
        )

    def count_tokens(self, text: str) -> int:
        """A safe estimate (counting through the API would cost a call per prompt)."""
        return estimate_tokens(text)

    async def start(self) -> None:
        """Nothing to load; a remote provider's health is judged by its breaker."""

    async def close(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.close()

    async def complete(self, prompt: Prompt, timeout_s: float) -> Completion:
        """The whole answer, with the provider's own token counts."""
        system, messages = _split_system(prompt)
        try:
            response = await self._client.messages.create(
                model=self._model,
                system=system,
                messages=messages,
                max_tokens=prompt.max_tokens,
                timeout=timeout_s,
            )
        except (anthropic.AnthropicError, ValueError) as exc:
            raise translate(anthropic, self.name, exc) from exc
        text = "".join(block.text for block in response.content if block.type == "text")
        return Completion(text, Usage(response.usage.input_tokens, response.usage.output_tokens))

    async def stream(self, prompt: Prompt, timeout_s: float) -> AsyncIterator[str | Usage]:
        """Pieces of text, then the usage reported by message_start and message_delta."""
        system, messages = _split_system(prompt)
        input_tokens = output_tokens = 0
        try:
            stream = await self._client.messages.create(
                model=self._model,
                system=system,
                messages=messages,
                max_tokens=prompt.max_tokens,
                stream=True,
                timeout=timeout_s,
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
            input_tokens = estimate_tokens("".join(m["content"] for m in prompt.messages))
        yield Usage(input_tokens, output_tokens)
