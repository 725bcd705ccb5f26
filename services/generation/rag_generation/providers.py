"""The ChatModel port every provider adapter fills."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from rag_generation.models import Prompt


class ChatModel(Protocol):
    """One way of turning a prompt into an answer."""

    name: str
    context_window: int

    def count_tokens(self, text: str) -> int:
        """Tokens `text` takes in this model's context (an estimate where no tokenizer)."""
        ...

    async def start(self) -> None:
        """Load what the provider needs and prove it can answer; raise if it cannot."""
        ...

    async def complete(self, prompt: Prompt) -> str:
        """The whole answer."""
        ...

    def stream(self, prompt: Prompt) -> AsyncIterator[str]:
        """The answer in pieces, as they are produced."""
        ...

    async def close(self) -> None:
        """Release the model."""
        ...
