"""A tenant at its concurrency cap is told to retry about when one of its calls ends."""

from __future__ import annotations

import asyncio

import pytest

from rag_common.errors import ResourceExhausted
from rag_common.security.identity import Identity
from rag_common.server.fair_use import FairUse, FairUsePolicy

ACME = Identity("p", "acme", frozenset({"reader"}))
GLOBEX = Identity("q", "globex", frozenset({"reader"}))


async def refusal(fair_use: FairUse, identity: Identity) -> ResourceExhausted:
    with pytest.raises(ResourceExhausted) as refused:
        await fair_use.admit(identity, "peer", streaming=False)
    assert refused.value.reason == "TENANT_CONCURRENCY"
    return refused.value


async def test_the_retry_delay_follows_how_long_the_tenants_calls_take():
    fair_use = FairUse(FairUsePolicy(tenant_concurrency=1))
    release = await fair_use.admit(ACME, "peer", streaming=False)
    # Nothing known yet: the shortest delay.
    assert (await refusal(fair_use, ACME)).retry_after_s == pytest.approx(0.1)
    await asyncio.sleep(0.4)  # the running call takes 0.4 s
    release()
    release = await fair_use.admit(ACME, "peer", streaming=False)
    assert 0.35 <= (await refusal(fair_use, ACME)).retry_after_s <= 1.0
    other = await fair_use.admit(GLOBEX, "peer", streaming=False)  # its own cap, at once
    other()
    release()
