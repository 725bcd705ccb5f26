"""`rag health` against another deployment: its internal services come from query's own
report, and both tables keep every name whole in an 80-column terminal."""

from __future__ import annotations

import argparse
import io

from rich.console import Console

from rag.v1 import health_details_service_pb2 as pb
from rag_cli.commands import health as command

HEALTHY, DEGRADED = pb.HEALTH_STATE_HEALTHY, pb.HEALTH_STATE_DEGRADED


def query_report() -> pb.GetHealthDetailsResponse:
    return pb.GetHealthDetailsResponse(
        service="query",
        state=DEGRADED,
        dependencies=[
            pb.DependencyHealth(
                name=name, state=HEALTHY, latency_ms=1.2, breaker="closed", detail="SERVING"
            )
            for name in ("embedding", "retrieval", "generation")
        ],
        signals=[
            pb.SignalHealth(
                name="p95_latency_s",
                state=DEGRADED,
                value=2.5,
                warning=2.0,
                critical=5.0,
                detail="412 calls",
            ),
            pb.SignalHealth(
                name="cache_hit_rate",
                state=HEALTHY,
                value=0.6,
                warning=0.3,
                critical=0.1,
                detail="not judged: 3 lookups in the window",
            ),
        ],
    )


async def test_another_deployment_is_asked_through_its_public_port_only(monkeypatch, tmp_path):
    asked: list[str] = []

    async def health_status(address, **_):
        asked.append(address)
        return "SERVING"

    async def health_details(address, metadata):
        return query_report()

    out = io.StringIO()
    monkeypatch.setattr(command, "health_status", health_status)
    monkeypatch.setattr(command, "health_details", health_details)
    monkeypatch.setattr(command, "console", Console(file=out, width=80, color_system=None))
    args = argparse.Namespace(
        service=None, target="rag.example.com:443", data_dir=tmp_path, api_key="k"
    )

    assert await command.health(args) == 0
    printed = out.getvalue()
    assert asked == ["rag.example.com:443"]  # not the local suite's internal ports
    assert "UNREACHABLE" not in printed
    for name in ("embedding", "retrieval", "generation", "SERVING", "degraded"):
        assert name in printed, printed
    for name in ("p95_latency_s", "cache_hit_rate", "412 calls"):
        assert name in printed, printed
    assert max(len(line) for line in printed.splitlines()) <= 80
