"""What the OpenAI and Anthropic adapters share: settings, token estimates, lifecycle."""

from __future__ import annotations

from typing import Any

from rag_generation.config import ProviderConfig
from rag_generation.models import Prompt, Usage
from rag_generation.prompt import estimate_tokens


class RemoteChatModel:
    """A provider behind an HTTP API; subclasses build `self._client` from `client_options`."""

    _client: Any

    def __init__(self, config: ProviderConfig) -> None:
        self.name = config.name
        self.context_window = config.context_window
        self._model = config.model

    @staticmethod
    def client_options(config: ProviderConfig) -> dict[str, Any]:
        """Keyword arguments both official SDK clients take."""
        return {
            # Local OpenAI-compatible servers accept any key; the SDKs insist on one.
            "api_key": config.api_key.get_secret_value() or "unused",
            "base_url": config.base_url or None,
            # Retried at one layer only: the router's policy, bounded by the deadline.
            "max_retries": 0,
            "timeout": config.timeout_s,
        }

    def count_tokens(self, text: str) -> int:
        """A safe estimate (no tokenizer files are fetched, no counting call is made)."""
        return estimate_tokens(text)

    async def start(self) -> None:
        """Nothing to load; a remote provider's health is judged by its breaker."""

    async def close(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.close()


def estimated_usage(prompt: Prompt, answer: str) -> Usage:
    """Usage for a provider that did not report its own."""
    return Usage(estimate_tokens(prompt.text), estimate_tokens(answer))
