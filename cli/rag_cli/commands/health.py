"""`rag health` and `rag probe`: whether each service serves, its dependencies and signals."""

from __future__ import annotations

import argparse

import grpc
from rich import box
from rich.table import Table

from rag.v1 import health_details_service_pb2 as pb
from rag.v1 import health_details_service_pb2_grpc as pb_grpc
from rag_cli.commands.operate import operator_credentials
from rag_cli.launcher import SERVICES, LocalCluster, base_service, client_channel, health_status
from rag_cli.output import bearer, console
from rag_common.security.credentials import OPERATOR_CLI

_DETAILS = "/rag.v1.HealthDetailsService/GetHealthDetails"


async def health(args: argparse.Namespace) -> int:
    """Each service's health and its dependencies (exit 1 if any is not SERVING)."""
    table = _table("service", "serving", "overall", "dependency", "state", "breaker", "ms")
    signals = _table("service", "signal", "state", "value", "warning", "critical")
    unhealthy = 0
    for service, address in _targets(args).items():
        serving = await health_status(address)
        report = await health_details(address, _details_credential(args, service))
        unhealthy += serving != "SERVING"
        dependencies = list(report.dependencies) if report else []
        overall = _state(report.state) if report else ""
        table.add_row(service, _coloured(serving), overall, *_dependency_cells(dependencies[:1]))
        for dependency in dependencies[1:]:
            table.add_row("", "", "", *_dependency_cells([dependency]))
        for number, reading in enumerate(report.signals if report else []):
            signals.add_row("" if number else service, *_signal_cells(reading))
    console.print(table)
    console.print(signals)
    return int(unhealthy > 0)


async def probe(args: argparse.Namespace) -> int:
    """Print the standard health status of one address; exit 0 only if SERVING (what a
    container health check runs: no credential, no rendering, one call)."""
    status = await health_status(args.address, call_timeout_s=min(args.timeout, 5.0))
    print(status)
    return int(status != "SERVING")


async def health_details(address: str, metadata: list[tuple[str, str]]):
    """HealthDetailsService's report, or None when the service does not answer (or
    refuses the credential)."""
    async with client_channel(address) as channel:
        stub = pb_grpc.HealthDetailsServiceStub(channel)
        try:
            return await stub.GetHealthDetails(
                pb.GetHealthDetailsRequest(), timeout=3.0, metadata=metadata
            )
        except grpc.aio.AioRpcError:
            return None


def _targets(args: argparse.Namespace) -> dict[str, str]:
    """The services to ask: those named, the local suite's four, or only the query service
    at `--target` when it is another deployment's."""
    if args.service:
        return dict(args.service)
    cluster = LocalCluster(args.data_dir)
    if args.target != cluster.address("query"):
        # Elsewhere only the public port is reachable; the internal services are its
        # dependencies, and its report has their state.
        return {"query": args.target}
    return {s: cluster.address(s) for s in SERVICES}


def _details_credential(args: argparse.Namespace, service: str) -> list[tuple[str, str]]:
    """Health details are an operator's: the API key on the public port, the suite's own
    signature, as an operator, on an internal one."""
    if base_service(service) == "query":
        return bearer(args.api_key)
    return operator_credentials(args).metadata(base_service(service), OPERATOR_CLI, method=_DETAILS)


def _table(*columns: str) -> Table:
    """Columns that never wrap (names and states stay whole), then a detail column that
    does; light rules leave it room in an 80-column terminal."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in columns:
        table.add_column(column, no_wrap=True)
    table.add_column("detail", overflow="fold")
    return table


def _dependency_cells(dependencies: list) -> tuple[str, ...]:
    if not dependencies:
        return ("", "", "", "", "")
    d = dependencies[0]
    return (d.name, _state(d.state), d.breaker, f"{d.latency_ms:.1f}", d.detail)


def _signal_cells(signal) -> tuple[str, ...]:
    """One signal's row; the one that tripped shows in the state's colour."""
    if signal.name.endswith("_s"):
        shown = [f"{v:.3f} s" for v in (signal.value, signal.warning, signal.critical)]
    else:
        shown = [f"{v:.1%}" for v in (signal.value, signal.warning, signal.critical)]
    return (signal.name, _state(signal.state), *shown, signal.detail)


def _coloured(status: str) -> str:
    colour = "green" if status == "SERVING" else "red"
    return f"[{colour}]{status}[/{colour}]"


def _state(value: int) -> str:
    name = pb.HealthState.Name(value).removeprefix("HEALTH_STATE_")
    colour = {"HEALTHY": "green", "DEGRADED": "yellow"}.get(name, "red")
    return f"[{colour}]{name.lower()}[/{colour}]"
