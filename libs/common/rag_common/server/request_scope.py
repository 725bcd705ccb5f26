"""The request scope of a call: its request id, deadline and caller, and its fair-use slot."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping

import grpc

from rag_common import context
from rag_common.security.identity import REQUEST_ID_KEY, Identity
from rag_common.server.fair_use import FairUse
from rag_common.telemetry import tracing

# A caller's request id is kept (it joins their logs to ours) only if it looks like one:
# it is written on every log line and forwarded on every call.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def enter(
    ctx: grpc.aio.ServicerContext, identity: Identity | None, metadata: Mapping[str, str]
) -> None:
    """Open the call's scope (`metadata`: the call's, as `metadata_dict` gives it): what
    every log line, trace and outgoing call of it carries."""
    remaining = ctx.time_remaining()
    request_id = _request_id(metadata.get(REQUEST_ID_KEY, ""))
    context.enter(
        context.RequestScope(
            request_id=request_id,
            deadline=None if remaining is None else time.monotonic() + remaining,
        )
    )
    tracing.annotate(request_id=request_id)  # a trace can be found by its request id
    context.set_identity(identity)


async def admit(
    ctx: grpc.aio.ServicerContext,
    identity: Identity | None,
    metadata: Mapping[str, str],
    fair_use: FairUse | None,
    *,
    streaming: bool = False,
) -> None:
    """Open the scope for the caller and take its fair-use slot (may raise
    ResourceExhausted)."""
    enter(ctx, identity, metadata)
    if fair_use is not None:
        release = await fair_use.admit(identity, ctx.peer(), streaming=streaming)
        # Held until the call is over for gRPC, not only for the handler: a stream whose
        # reader stalls keeps its slot (and counts against its tenant) until it ends.
        ctx.add_done_callback(lambda _: release())


def _request_id(given: str) -> str:
    return given if _REQUEST_ID.fullmatch(given) else context.new_request_id()
