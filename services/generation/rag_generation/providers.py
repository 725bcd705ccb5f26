"""The ChatModel port every provider adapter fills, and the errors adapters translate to."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from rag_common.breaker import counts_as_failure
from rag_common.errors import Unavailable
from rag_common.reasons import Reason
from rag_generation.models import Completion, Prompt, Usage


class ProviderError(Unavailable):
    """A provider failed. Adapters raise only this, translated once from the vendor's error.

    `retryable`: the same call may succeed if tried again (429, 5xx, timeouts, connection).
    `retry_after`: seconds the provider asked us to wait, if it said.
    `counts`: whether it says something about the provider's health (a 400 caused by our
    request does not, so it never opens the provider's breaker).
    """

    default_reason = Reason.PROVIDER_FAILED

    def __init__(
        self,
        provider: str,
        message: str,
        *,
        reason: str = Reason.PROVIDER_FAILED,
        retryable: bool = True,
        retry_after: float | None = None,
        counts: bool = True,
    ) -> None:
        super().__init__(f"{provider}: {message}", reason=reason, metadata={"provider": provider})
        self.retryable = retryable
        self.retry_after = retry_after
        self.counts = counts


class ChatModel(Protocol):
    """One way of turning a prompt into an answer. A model that runs on this machine may
    also have a `pace` (rag_generation.pace.Pace): the router then sizes its prompt and
    answer to the time a request leaves it."""

    name: str
    context_window: int

    def count_tokens(self, text: str) -> int:
        """Tokens `text` takes in this model's context (an estimate where no tokenizer)."""
        ...

    async def start(self) -> None:
        """Load what the provider needs and prove it can answer; raise if it cannot."""
        ...

    async def complete(self, prompt: Prompt, timeout_s: float) -> Completion:
        """The whole answer."""
        ...

    def stream(self, prompt: Prompt, timeout_s: float) -> AsyncIterator[str | Usage]:
        """Pieces of the answer as they are produced, then (where known) its Usage."""
        ...

    async def close(self) -> None:
        """Release the model and its connections."""
        ...


def counts_against_provider(exc: BaseException) -> bool:
    """Breaker rule for providers: errors about our request never count."""
    return getattr(exc, "counts", True) and counts_as_failure(exc)
