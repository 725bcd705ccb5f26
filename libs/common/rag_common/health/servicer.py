"""gRPC edges of health: grpc.health.v1 Check, and HealthDetailsService, which every
service hosts."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health

from rag.v1 import health_details_service_pb2 as pb
from rag.v1 import health_details_service_pb2_grpc as pb_grpc
from rag_common.health.details import HealthChecker
from rag_common.health.verdict import Health

_STATES = {
    Health.HEALTHY: pb.HEALTH_STATE_HEALTHY,
    Health.DEGRADED: pb.HEALTH_STATE_DEGRADED,
    Health.UNHEALTHY: pb.HEALTH_STATE_UNHEALTHY,
}


class CheckOnlyHealth(health.aio.HealthServicer):
    """grpc.health.v1 with Check alone, which is what probes and load balancers ask.

    Watch is refused: it is keyless and never ends by itself, so a caller could hold every
    server slot with Watch streams, and no identity would let fair use limit it.
    """

    async def Watch(self, request, context) -> None:
        """Refused, as UNIMPLEMENTED."""
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Watch is not served: use Check")


class HealthDetailsServicer(pb_grpc.HealthDetailsServiceServicer):
    """rag.v1.HealthDetailsService."""

    def __init__(self, checker: HealthChecker) -> None:
        self._checker = checker

    async def GetHealthDetails(
        self, request: pb.GetHealthDetailsRequest, context
    ) -> pb.GetHealthDetailsResponse:
        """Check every dependency now."""
        report = await self._checker.report()
        return pb.GetHealthDetailsResponse(
            service=report.service,
            state=_STATES[report.health],
            dependencies=[
                pb.DependencyHealth(
                    name=d.name,
                    state=_STATES[d.health],
                    latency_ms=d.latency_ms,
                    breaker=d.breaker,
                    detail=d.detail,
                )
                for d in report.dependencies
            ],
            signals=[
                pb.SignalHealth(
                    name=s.name,
                    state=_STATES[s.health],
                    value=s.value,
                    warning=s.warning,
                    critical=s.critical,
                    detail=s.detail,
                )
                for s in report.signals
            ],
        )
