"""Translate the OpenAI and Anthropic SDKs' errors into ProviderError, once, here.

Both SDKs share one exception hierarchy (APIStatusError and its subclasses, APITimeoutError,
APIConnectionError), so one function serves both, given the SDK module.
"""

from __future__ import annotations

from types import ModuleType

from rag_common.reasons import Reason
from rag_generation.providers import ProviderError

_RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504, 529}


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    for header, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(header)
        if value is not None:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                return None  # an HTTP date; fall back to our own backoff
    return None


def translate(sdk: ModuleType, provider: str, exc: Exception) -> ProviderError:
    """The ProviderError that `exc`, raised by `sdk` (openai or anthropic), stands for."""
    if isinstance(exc, sdk.APITimeoutError):
        return ProviderError(provider, "timed out", reason=Reason.PROVIDER_TIMEOUT)
    if isinstance(exc, sdk.APIConnectionError):
        return ProviderError(provider, "unreachable", reason=Reason.PROVIDER_UNREACHABLE)
    if isinstance(exc, sdk.RateLimitError):
        return ProviderError(
            provider,
            "rate limited",
            reason=Reason.PROVIDER_RATE_LIMITED,
            retry_after=_retry_after(exc),
        )
    if isinstance(exc, sdk.AuthenticationError | sdk.PermissionDeniedError):
        # Our key is wrong: retrying cannot help, but the provider is unusable until fixed.
        return ProviderError(
            provider, "rejected our API key", reason=Reason.PROVIDER_AUTH_FAILED, retryable=False
        )
    if isinstance(exc, sdk.APIStatusError):
        status = exc.status_code
        if status < 400:
            # An error event inside a stream that had started with 200 OK.
            return ProviderError(provider, "stream failed", reason=Reason.PROVIDER_STREAM_ERROR)
        if status in _RETRYABLE_STATUS or status >= 500:
            return ProviderError(
                provider,
                f"HTTP {status}",
                reason=Reason.PROVIDER_SERVER_ERROR,
                retry_after=_retry_after(exc),
            )
        # Any other 4xx is about this request (too long, bad parameter): not the provider's
        # health, and not worth repeating.
        return ProviderError(
            provider,
            f"HTTP {status}",
            reason=Reason.PROVIDER_BAD_REQUEST,
            retryable=False,
            counts=False,
        )
    if isinstance(exc, sdk.APIResponseValidationError | ValueError):
        return ProviderError(
            provider, "sent a malformed response", reason=Reason.PROVIDER_BAD_RESPONSE
        )
    return ProviderError(provider, type(exc).__name__, reason=Reason.PROVIDER_FAILED)
