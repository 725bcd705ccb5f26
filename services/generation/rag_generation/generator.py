"""The generation core: route a prompt across providers with breakers, retries and fallback."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from rag_common import context
from rag_common.breaker import BreakerState
from rag_common.errors import (
    DeadlineExceeded,
    InvalidArgument,
    RagError,
    ResourceExhausted,
    Unavailable,
)
from rag_common.reasons import Reason
from rag_common.telemetry import tracing
from rag_generation.budgets import BudgetLimits, DailyBudgets
from rag_generation.citations import cited_sources
from rag_generation.config import ProviderConfig
from rag_generation.metrics import UsageStats
from rag_generation.models import Completion, Generation, GenerationRequest, Prompt, Usage
from rag_generation.pace import MIN_ANSWER_TOKENS, Pace
from rag_generation.prompt import build_prompt
from rag_generation.providers import ProviderError
from rag_generation.retry import LLM_PROVIDER, retrying
from rag_generation.routing import Route, TieringRule, plan

log = logging.getLogger(__name__)

MAX_QUESTION_CHARS = 4000
MAX_SOURCES = 100
MAX_TOKENS_LIMIT = 4096
_NO_DEADLINE_S = 120.0  # budget for a call that arrived without a deadline


@dataclass(frozen=True)
class StreamEnd:
    """Last item of a stream: the summary of the answer just streamed."""

    generation: Generation


_Started = TypeVar("_Started")


@dataclass
class _Taken(Generic[_Started]):
    """The provider that took a request: what it was given and what it started."""

    route: Route
    prompt: Prompt
    started: _Started
    failed: list[str]  # providers that failed or declined before it
    tier: str

    @property
    def name(self) -> str:
        """The provider's name."""
        return self.route.name


class Generator:
    """Answers from the first provider that can, trying them in `routing.plan` order.

    A provider whose breaker is open is skipped without a call, so once a provider is known
    to be down, requests pay nothing for it; after its recovery time one probe decides
    whether it is back. Each provider's retryable errors are retried (LLM_PROVIDER policy)
    while its breaker stays closed and the deadline allows; then the next provider is tried.
    Every provider but the last leaves `fallback_reserve_s` of the request's time to the
    ones after it, so a provider too slow for the time left still ends in an answer.
    """

    def __init__(
        self,
        routes: Sequence[Route],
        *,
        default_max_tokens: int,
        tiering: TieringRule | None = None,
        rng: random.Random | None = None,
        budgets: DailyBudgets | None = None,
        fallback_reserve_s: float = 0.0,
    ) -> None:
        if not routes:
            raise ValueError("at least one provider is required")
        self._routes = list(routes)
        self._ready: list[Route] = []
        self._default_max_tokens = default_max_tokens
        self._tiering = tiering or TieringRule()
        self._rng = rng or random.Random()
        self.usage = UsageStats()  # read by the metrics endpoint
        self._budgets = budgets or DailyBudgets(BudgetLimits())
        self._fallback_reserve_s = fallback_reserve_s

    @property
    def provider_names(self) -> list[str]:
        """Providers that started."""
        return [r.name for r in self._ready]

    @property
    def routes(self) -> list[Route]:
        """Every configured provider, started or not."""
        return list(self._routes)

    def breaker_states(self) -> dict[str, str]:
        """Each started provider's breaker state."""
        return {r.name: r.breaker.state.value for r in self._ready}

    async def start(self) -> None:
        """Start every provider; those that fail are left out, but one must start."""
        for route in self._routes:
            try:
                await route.model.start()
                self._ready.append(route)
            except Exception as exc:
                log.warning("provider unavailable", extra={"provider": route.name}, exc_info=exc)
        if not self._ready:
            raise RuntimeError("no generation provider could start")
        log.info("providers ready", extra={"providers": self.provider_names})

    async def close(self) -> None:
        """Release every provider."""
        for route in self._ready:
            await route.model.close()

    async def generate(self, request: GenerationRequest) -> Generation:
        """The first whole answer any provider gives."""
        taken = await self._first_taker(request, self._complete)
        taken.route.breaker.record_success()
        return await self._finish(taken, taken.started)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str | StreamEnd]:
        """Pieces of the answer, then a StreamEnd.

        Until a provider has produced its first piece, any failure (including no first piece
        within its first_token_timeout_s) moves on to the next provider, unseen by the
        caller. After that, a failure ends the stream: a StreamEnd marked partial with the
        text so far, then Unavailable(STREAM_INTERRUPTED).
        """
        taken = await self._first_taker(request, self._open_stream)
        first, rest = taken.started
        pieces, usage = [first], Usage()
        if first:
            yield first
        try:
            async for item in rest:
                if isinstance(item, Usage):
                    usage = item
                else:
                    pieces.append(item)
                    yield item
        except ProviderError as exc:
            taken.route.breaker.record_failure(exc)
            yield StreamEnd(await self._finish(taken, Completion("".join(pieces), usage), True))
            raise Unavailable(
                f"provider {taken.name} failed after answering in part",
                reason=Reason.STREAM_INTERRUPTED,
                metadata={"provider": taken.name},
            ) from exc
        finally:
            await rest.aclose()
        taken.route.breaker.record_success()
        yield StreamEnd(await self._finish(taken, Completion("".join(pieces), usage)))

    async def _first_taker(
        self,
        request: GenerationRequest,
        start: Callable[[Route, Prompt, float], Awaitable[_Started]],
    ) -> _Taken[_Started]:
        """The first provider, in plan order, that starts an answer with `start` (a whole
        one, or a stream's first piece); the ones that failed or declined before it."""
        self._validate(request)
        tier = self._tiering.tier(request.question)
        failed: list[str] = []
        routes, held_back = await self._candidates(request, tier)
        for route, reserve_s in self._reserving(routes):
            if not route.breaker.allow():
                continue
            try:
                prompt = self._prompt(route, request, reserve_s)
                started = await start(route, prompt, reserve_s)
            except ProviderError as exc:
                self._note_failure(route, exc, failed)
                continue
            except BaseException:
                route.breaker.release_probe()
                raise
            return _Taken(route, prompt, started, failed, tier)
        raise self._nothing_answered(failed, held_back)

    async def _finish(
        self, taken: _Taken, completion: Completion, partial: bool = False
    ) -> Generation:
        """The answer as a Generation: logged, counted, traced and charged to the tenant."""
        route, prompt, failed, tier = taken.route, taken.prompt, taken.failed, taken.tier
        usage = completion.usage
        usage = Usage(usage.input_tokens, usage.output_tokens, _cost(route.config, usage))
        log.info(
            "generated",
            extra={
                "provider": route.name,
                "tier": tier,
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "cost_usd": usage.cost_usd,
                "failed_providers": failed,
                "partial": partial,
            },
        )
        generation = Generation(
            text=completion.text,
            provider=route.name,
            sources_used=len(prompt.sources),
            failed_providers=list(failed),
            usage=usage,
            cited_sources=cited_sources(completion.text, len(prompt.sources)),
            tier=tier,
            partial=partial,
        )
        self.usage.generated(generation)
        tracing.annotate(
            provider=route.name,
            model=route.config.model or route.config.kind,
            tier=tier,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cost_usd=usage.cost_usd,
            failed_providers=failed or None,
        )
        await self._charge(route, generation)
        return generation

    def _reserving(self, routes: list[Route]) -> Iterator[tuple[Route, float]]:
        """Each route with the time its attempts leave for the routes after it. A route that
        would have less than that for itself is skipped (not a failure): an attempt cut off
        at once would only count against its breaker."""
        for position, route in enumerate(routes):
            reserve_s = self._fallback_reserve_s if position + 1 < len(routes) else 0.0
            if reserve_s and self._remaining() - reserve_s < reserve_s:
                tracing.event("provider_skipped", provider=route.name, reason="no_time")
                continue
            yield route, reserve_s

    async def _complete(self, route: Route, prompt: Prompt, reserve_s: float) -> Completion:
        async for attempt in self._retrying(route, reserve_s):
            with attempt, _attempt_span(route, attempt) as span:
                # The whole answer must be in before the next provider could take over.
                timeout = self._attempt_timeout(route.config, reserve_s)
                try:
                    completion = await asyncio.wait_for(
                        route.model.complete(prompt, timeout), timeout
                    )
                except TimeoutError:
                    raise self._timed_out(route, "no answer") from None
                except ProviderError as exc:
                    route.breaker.record_failure(exc)
                    raise
                usage = completion.usage
                tracing.annotate(
                    span,
                    input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens,
                    cost_usd=_cost(route.config, usage),
                )
                return completion
        raise AssertionError("unreachable: tenacity reraises the last error")

    async def _open_stream(
        self, route: Route, prompt: Prompt, reserve_s: float
    ) -> tuple[str, AsyncIterator[str | Usage]]:
        """Start a stream and wait for its first piece of text, retrying like a call."""
        async for attempt in self._retrying(route, reserve_s):
            with attempt, _attempt_span(route, attempt, streaming=True):
                # Only the first piece must come before the next provider could take over;
                # once text is out there is no switching, and the stream may use it all.
                timeout = self._attempt_timeout(route.config)
                first_wait = self._attempt_timeout(route.config, reserve_s)
                stream = route.model.stream(prompt, timeout)
                try:
                    first = await asyncio.wait_for(
                        _first_text(stream), min(route.config.first_token_timeout_s, first_wait)
                    )
                except TimeoutError:
                    await stream.aclose()
                    raise self._timed_out(route, "no first token") from None
                except ProviderError as exc:
                    await stream.aclose()
                    route.breaker.record_failure(exc)
                    raise
                return first, stream
        raise AssertionError("unreachable: tenacity reraises the last error")

    def _retrying(self, route: Route, reserve_s: float):
        def retryable(exc: BaseException) -> bool:
            # Stop hammering a provider once its breaker has opened.
            return (
                isinstance(exc, ProviderError)
                and exc.retryable
                and route.breaker.state is BreakerState.CLOSED
            )

        return retrying(LLM_PROVIDER, retryable, budget_s=self._remaining() - reserve_s)

    @staticmethod
    def _timed_out(route: Route, what: str) -> ProviderError:
        # Every failed attempt, not just a route's last, tells the breaker: a dead provider
        # is then found within a request or two.
        exc = ProviderError(route.name, f"{what} in time", reason=Reason.PROVIDER_TIMEOUT)
        route.breaker.record_failure(exc)
        return exc

    def _attempt_timeout(self, config: ProviderConfig, reserve_s: float = 0.0) -> float:
        """Seconds an attempt may take: the provider's own limit, within the request's time
        less what is kept for the providers after it."""
        left = self._remaining()
        if left <= 0:
            raise DeadlineExceeded("the request's deadline passed during generation")
        return min(config.timeout_s, max(left - reserve_s, 0.0))

    @staticmethod
    def _remaining() -> float:
        return context.remaining_seconds(_NO_DEADLINE_S)

    async def _candidates(self, request: GenerationRequest, tier: str) -> tuple[list[Route], bool]:
        """The providers to try, in order; without the paid ones when the caller's tenant
        has spent its day's budget (then True: some were held back)."""
        routes = plan(self._ready, tier=tier, preferred=request.provider, rng=self._rng)
        if not await self._budgets.spent(context.current_tenant()):
            return routes, False
        free = [r for r in routes if not _paid(r.config)]
        return free, len(free) < len(routes)

    async def _charge(self, route: Route, generation: Generation) -> None:
        if _paid(route.config):
            usage = generation.usage
            await self._budgets.charge(
                context.current_tenant(),
                usage.input_tokens + usage.output_tokens,
                usage.cost_usd,
            )

    def _nothing_answered(self, failed: list[str], held_back: bool) -> RagError:
        if held_back and not failed:
            return ResourceExhausted(
                "this tenant has spent today's LLM budget and no free provider is configured",
                reason=Reason.LLM_BUDGET_EXHAUSTED,
                retry_after_s=round(self._budgets.seconds_to_reset()),
            )
        return _all_failed(failed)

    def _prompt(self, route: Route, request: GenerationRequest, reserve_s: float) -> Prompt:
        window = route.model.context_window
        max_tokens = min(request.max_tokens or self._default_max_tokens, window // 2)
        pace: Pace | None = getattr(route.model, "pace", None)
        if pace is None:
            return build_prompt(
                request.question,
                request.sources,
                context_window=window,
                max_tokens=max_tokens,
                count_tokens=route.model.count_tokens,
            )
        # A model that runs here gets the sources it can read and the answer it can write
        # in its time, or declines at once (not its failure: the time was short).
        seconds = self._attempt_timeout(route.config, reserve_s)
        shortest = min(max_tokens, MIN_ANSWER_TOKENS)
        prompt = build_prompt(
            request.question,
            request.sources,
            context_window=min(window - max_tokens, pace.readable_tokens(seconds)) + shortest,
            max_tokens=shortest,
            count_tokens=route.model.count_tokens,
        )
        prompt_tokens = route.model.count_tokens(prompt.text)
        writable = min(max_tokens, pace.writable_tokens(seconds, prompt_tokens))
        if writable < shortest or (request.sources and not prompt.sources):
            declined = ProviderError(
                route.name,
                f"too slow to answer in {seconds:.1f} s at its measured pace",
                reason=Reason.PROVIDER_TOO_SLOW,
                retryable=False,
                counts=False,
            )
            route.breaker.record_failure(declined)  # uncounted: only frees a probe's place
            raise declined
        return dataclasses.replace(prompt, max_tokens=writable)

    def _validate(self, request: GenerationRequest) -> None:
        if not request.question.strip():
            raise InvalidArgument("input.question", "must not be empty")
        if len(request.question) > MAX_QUESTION_CHARS:
            raise InvalidArgument("input.question", f"at most {MAX_QUESTION_CHARS} characters")
        if len(request.sources) > MAX_SOURCES:
            raise InvalidArgument("input.sources", f"at most {MAX_SOURCES} sources")
        if not 0 <= request.max_tokens <= MAX_TOKENS_LIMIT:
            raise InvalidArgument("input.max_tokens", f"must be between 0 and {MAX_TOKENS_LIMIT}")
        known = {r.name for r in self._routes}
        if request.provider and request.provider not in known:
            # Named back only in part, and without the list: which providers (and so which
            # vendors and prices) the suite runs is not the caller's business.
            shown = request.provider[:40] + ("…" if len(request.provider) > 40 else "")
            raise InvalidArgument("input.provider", f"no provider named '{shown}'")

    def _note_failure(self, route: Route, exc: ProviderError, failed: list[str]) -> None:
        self.usage.failed(route.name, exc.reason)
        tracing.event("provider_failed", provider=route.name, reason=exc.reason)
        log.warning(
            "provider failed, trying the next",
            extra={
                "provider": route.name,
                "reason": exc.reason,
                "breaker": route.breaker.state.value,
            },
        )
        failed.append(route.name)


def _paid(config: ProviderConfig) -> bool:
    return config.price_input_per_mtok > 0 or config.price_output_per_mtok > 0


def _cost(config: ProviderConfig, usage: Usage) -> float:
    """USD at the configured prices."""
    cost = (
        usage.input_tokens * config.price_input_per_mtok
        + usage.output_tokens * config.price_output_per_mtok
    ) / 1_000_000
    return round(cost, 8)


def _attempt_span(route: Route, attempt, *, streaming: bool = False):
    """The span of one attempt at a provider: which, which try, and its breaker's state."""
    return tracing.span(
        "llm.attempt",
        provider=route.name,
        model=route.config.model or route.config.kind,
        retry=attempt.retry_state.attempt_number - 1,
        breaker=route.breaker.state.value,
        streaming=streaming,
    )


async def _first_text(stream: AsyncIterator[str | Usage]) -> str:
    """The first non-empty piece of text; empty if the stream ends without any."""
    async for item in stream:
        if isinstance(item, str) and item:
            return item
    return ""


def _all_failed(failed: list[str]) -> Unavailable:
    return Unavailable(
        "every generation provider failed or is cooling down",
        reason=Reason.ALL_PROVIDERS_FAILED,
        metadata={"providers": ",".join(failed)},
    )
