"""Each call's outcome, recorded once: its log line, metrics, health signals and audit line."""

from __future__ import annotations

import logging
import time
from typing import Any

import grpc

from rag_common import context, status
from rag_common.errors import RagError
from rag_common.health.signals import SignalWindow
from rag_common.security.audit import AuditLog
from rag_common.telemetry import tracing
from rag_common.telemetry.metrics import RpcMetrics

log = logging.getLogger(__name__)


class LogSampler:
    """At most one log line a second per (method, code) for callers' errors.

    Every call is still counted in the metrics; the log only needs to show that it
    happens, and one client sending garbage in a loop must not fill the disk.
    """

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], float] = {}
        self._suppressed: dict[tuple[str, str], int] = {}

    def admit(self, method: str, code: str) -> int | None:
        """None: do not log this one; else how many were left out since the last line."""
        if code not in _CALLER_ERRORS:
            return 0
        key, now = (method, code), time.monotonic()
        if now - self._last.get(key, -1.0) < 1.0:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._suppressed.pop(key, 0)


_CALLER_ERRORS = {
    "INVALID_ARGUMENT",
    "UNAUTHENTICATED",
    "PERMISSION_DENIED",
    "NOT_FOUND",
    "RESOURCE_EXHAUSTED",
}


class CallOutcome:
    """One call's bookkeeping: its log line, metrics and signals, written exactly once."""

    def __init__(
        self,
        method: str,
        metrics: RpcMetrics,
        signals: SignalWindow,
        sampler: LogSampler,
        *,
        timed: bool,
        audit: AuditLog | None = None,
    ) -> None:
        self._method = method
        self._audit = audit
        self.request: Any = None  # once decoded: what the audit line names
        self._metrics = metrics
        self._signals = signals
        self._sampler = sampler
        self._timed = timed
        self._started = time.perf_counter()
        self._more_in_flight = 0  # questions of a batch beyond the first
        metrics.started(method)

    def note_request(self, request: Any) -> Any:
        """Note the decoded request (the audit line names it). A batch of several questions
        counts as that many calls in flight, so the scaling signal measures the questions
        being served, however they are sent."""
        self.request = request
        more = _questions_in(request) - 1
        if more > 0:
            self._more_in_flight = more
            self._metrics.in_flight(self._method, more)
        return request

    def done(self, code: str, reason: str = "", **extra: Any) -> None:
        """Log and count the call as ended with `code` (and `reason`, for an error)."""
        seconds = time.perf_counter() - self._started
        tracing.call_ended(code)
        if self._more_in_flight:
            self._metrics.in_flight(self._method, -self._more_in_flight)
            self._more_in_flight = 0
        self._metrics.finished(self._method, code, seconds, reason)
        self._signals.record(code, seconds, timed=self._timed)
        if self._audit is not None:
            self._audit.record(self._method, context.caller(), self.request, code, reason)
        if reason:
            extra["reason"] = reason
        suppressed = self._sampler.admit(self._method, code)
        if suppressed is None:
            return
        if suppressed:
            extra["suppressed"] = suppressed  # lines left out since the last one
        _log_done(self._method, code, seconds * 1000, **extra)

    async def abort(self, ctx: grpc.aio.ServicerContext, exc: BaseException) -> None:
        """End the call with the status `exc` stands for (always raises)."""
        if not isinstance(exc, Exception):  # cancelled, or a stream closed: caller gone
            self.done("CANCELLED")
            raise exc
        if isinstance(exc, grpc.aio.AbortError):  # the handler ended the call itself
            code = ctx.code()
            self.done(getattr(code, "name", "UNKNOWN"))  # or it stays "in flight" forever
            raise exc
        if not isinstance(exc, RagError):
            log.error("unhandled error in %s", self._method, exc_info=exc)
            exc = RagError("internal error")
        code, message, trailers = status.encode(exc)
        self.done(code.name, reason=exc.reason)
        await ctx.abort(code, message, trailing_metadata=trailers)


# Requests that carry several questions, by type, and the field that holds them.
_QUESTION_BATCHES = {
    "rag.v1.RetrieveBatchRequest": "searches",
    "rag.v1.GenerateBatchRequest": "items",
}


def _questions_in(request: Any) -> int:
    """How many questions a request carries: one, unless it is a batch of them."""
    descriptor = getattr(request, "DESCRIPTOR", None)  # none for a client stream
    field = _QUESTION_BATCHES.get(descriptor.full_name) if descriptor is not None else None
    return len(getattr(request, field)) if field else 1


# A call this slow is logged even when it succeeds.
SLOW_CALL_MS = 1000.0


def _log_done(method: str, code: str, elapsed_ms: float, **extra: Any) -> None:
    elapsed_ms = round(elapsed_ms, 2)
    # Every call at INFO would cost an internal service about a tenth of its throughput
    # (measured on EmbeddingService); failures and slow calls stay visible at INFO.
    level = logging.DEBUG if code == "OK" and elapsed_ms < SLOW_CALL_MS else logging.INFO
    if log.isEnabledFor(level):
        log.log(
            level, "rpc", extra={"method": method, "code": code, "elapsed_ms": elapsed_ms, **extra}
        )
