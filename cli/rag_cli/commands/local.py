"""Running the suite on this machine: `rag up`, `rag serve` (a container's entrypoint) and
`rag certs`."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import signal
from pathlib import Path

import grpc

from rag.v1 import query_service_pb2
from rag_cli.commands.ask import ask, ingest_paths
from rag_cli.launcher import SERVICES, LocalCluster, die_with_launcher
from rag_cli.output import console, fail
from rag_cli.supervise import keep_running
from rag_common.security.tls import write_development_ca

DEMO_QUESTION = "How do I ingest documents and ask a question?"


async def certs_command(args: argparse.Namespace) -> int:
    """Write a development CA and a certificate and key for each service and the CLI."""
    hosts = ["localhost", "127.0.0.1", *args.hosts]
    for path in write_development_ca(args.folder, [*SERVICES, "cli"], hosts):
        console.print(str(path))
    console.print(
        "each service: RAG_TLS_CERT_FILE=<service>.pem RAG_TLS_KEY_FILE=<service>-key.pem "
        "RAG_TLS_CA_FILE=ca.pem (the CA's own key, ca-key.pem, is for development only)"
    )
    return 0


async def up(args: argparse.Namespace) -> int:
    """Start the four services; with --demo ingest the docs and ask a question; wait for Ctrl-C.

    SIGTERM, SIGHUP and SIGINT all stop the services before the launcher exits, at any
    point (also while they start); a launcher killed outright takes them down too (see
    `LocalCluster.start`).
    """
    cluster = LocalCluster(args.data_dir)
    if args.tls:
        args.tls = cluster.use_tls()  # the files this launcher's own calls (the demo) use
        client = dict(zip(("CERT", "KEY", "CA"), cluster.tls_paths("cli"), strict=True))
        exports = {f"RAG_TLS_{kind}_FILE": str(path) for kind, path in client.items()}
        console.print(
            "TLS on every port, mTLS between services; for the CLI: "
            + " ".join(f"export {name}={value}" for name, value in exports.items())
        )
    console.print(f"starting {', '.join(SERVICES)} (logs in {cluster.log_dir}) ...")
    try:
        cluster.start()
    except RuntimeError as exc:
        console.print(f"[red]{exc}[/red]")
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in _STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    session = asyncio.ensure_future(serve_cluster(cluster, args))
    stopped = asyncio.ensure_future(stop.wait())
    code = 0
    try:
        await asyncio.wait({session, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if session.done() and (failure := session.exception()) is not None:
            console.print(f"[red]{failure}[/red]")
            code = 1
    finally:
        for task in (session, stopped):
            task.cancel()
        await asyncio.gather(session, stopped, return_exceptions=True)
        # A second signal must not abandon the services half-stopped; stop() is bounded.
        for sig in _STOP_SIGNALS:
            loop.add_signal_handler(sig, lambda: None)
        console.print("stopping ...")
        await asyncio.to_thread(cluster.stop)
        console.print("stopped")
    return code


# What systemd, Docker, CI runners, `timeout` and a closed terminal send, and Ctrl-C.
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


async def serve_cluster(cluster: LocalCluster, args: argparse.Namespace) -> None:
    """Wait for SERVING, run the demo if asked, then keep the services running (a service
    that exits is started again) until cancelled."""
    ready = await cluster.wait_serving()
    slowest = max(ready.values())
    console.print(
        f"all services SERVING after {slowest:.1f}s: "
        + ", ".join(f"{s} {cluster.address(s)}" for s in SERVICES)
    )
    console.print(
        "metrics: " + ", ".join(cluster.metrics_url(s) for s in SERVICES) + " (rag advise)"
    )
    if args.demo:
        demo_paths = [p for p in ("README.md", "docs") if Path(p).exists()]
        calls = {"api_key": args.api_key, "timeout_s": args.timeout, "tls": args.tls or None}
        await ingest_paths(args.target, demo_paths, jobs=2, **calls)
        console.print(f"\n[bold]Q:[/bold] {DEMO_QUESTION}")
        # Extractive: grounded and instant. The packaged 135M-parameter local model shows
        # the LLM path works but drifts on long technical context; try it with --provider.
        options = query_service_pb2.QueryOptions(provider="extractive")
        try:
            await ask(args.target, DEMO_QUESTION, options=options, stream=True, **calls)
        except grpc.aio.AioRpcError as exc:
            fail(exc)  # told, and the suite keeps serving
        console.print('[dim]also try: rag query "your question" --provider local[/dim]')
    console.print("\nserving; press Ctrl-C to stop")
    await keep_running(cluster, lambda line: console.print(f"[yellow]{line}[/yellow]"))


def serve(service: str) -> None:
    """Run one service with its settings from the environment, until SIGTERM.

    Only that service's module is imported, so the query and retrieval images never load
    model libraries. Bad settings exit with status 2, naming each bad variable.
    """
    # Set before numpy loads: its BLAS threads spin after each small product (a semantic
    # cache lookup), which took as much CPU as the whole query service's own work. The
    # embedding model runs its own threads.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    die_with_launcher()
    importlib.import_module(f"rag_{service}.__main__").main()
