"""The `rag` command: up, serve, ingest, query, eval, health, advise, keys, backup, restore."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import signal
import sys
import time
from pathlib import Path

import grpc
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from rag.v1 import (
    document_service_pb2,
    document_service_pb2_grpc,
    health_details_service_pb2,
    health_details_service_pb2_grpc,
    query_service_pb2,
    query_service_pb2_grpc,
)
from rag_cli import advise, evaluate, files, keys
from rag_cli.backup import create_backup, restore_backup
from rag_cli.launcher import (
    DEV_API_KEY,
    SERVICES,
    LocalCluster,
    base_service,
    client_channel,
    die_with_launcher,
    health_status,
    local_identity_key,
)
from rag_cli.supervise import keep_running
from rag_common.credentials import OPERATOR_CLI, Credentials
from rag_common.identity import ROLES
from rag_common.tls import write_development_ca
from rag_query.config import ApiKey

console = Console()
DEMO_QUESTION = "How do I ingest documents and ask a question?"


class CliSettings(BaseSettings):
    """Where the CLI sends calls and with which key (env RAG_TARGET, RAG_API_KEY)."""

    model_config = SettingsConfigDict(env_prefix="RAG_", extra="ignore")

    target: str = Field("127.0.0.1:50051", description="QueryService address.")
    api_key: str = Field(DEV_API_KEY, description="API key sent as a Bearer token.")
    data_dir: Path = Field(Path(".rag-data"), description="Where `rag up` keeps data and logs.")
    redis_url: str = Field(
        "",
        validation_alias="RAG_QUERY_REDIS_URL",
        description="The query service's Redis, where corpus versions live.",
    )
    identity_key: str = Field(
        "",
        validation_alias="RAG_IDENTITY_KEY",
        description="The suite's key for internal calls (default: the one `rag up` made).",
        repr=False,
    )


def _metadata(args: argparse.Namespace) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {args.api_key}")]


def _fail(exc: grpc.aio.AioRpcError) -> int:
    console.print(f"[red]{exc.code().name}[/red]: {exc.details()}")
    return 1


async def ingest(args: argparse.Namespace) -> int:
    """Ingest files and folders, `--jobs` calls at a time, with progress and chunks/s."""
    paths = files.find_files(args.paths)
    if not paths:
        console.print("no .md, .txt or .rst files found")
        return 1
    stored = {"files": 0, "chunks": 0}
    failures: list[grpc.aio.AioRpcError] = []
    started = time.perf_counter()
    async with client_channel(args.target, getattr(args, "tls", None)) as channel:
        stub = document_service_pb2_grpc.DocumentServiceStub(channel)
        with Progress(console=console, transient=len(paths) < 2) as progress:
            task = progress.add_task("ingesting", total=len(paths))
            pending = iter(files.batches(paths))

            async def worker() -> None:
                # Each worker sends its next batch as soon as the last one is stored, so
                # the pipeline stays full while a failure stops every worker at its next turn.
                for batch in pending:
                    if failures:
                        return
                    request = document_service_pb2.IngestDocumentsRequest(
                        documents=[files.to_document(p) for p in batch]
                    )
                    try:
                        reply = await stub.IngestDocuments(
                            request, metadata=_metadata(args), timeout=args.timeout
                        )
                    except grpc.aio.AioRpcError as exc:
                        failures.append(exc)
                        return
                    stored["files"] += len(batch)
                    stored["chunks"] += sum(d.chunks for d in reply.documents)
                    rate = stored["chunks"] / (time.perf_counter() - started)
                    progress.update(
                        task, advance=len(batch), description=f"ingesting, {rate:.0f} chunks/s"
                    )

            await asyncio.gather(*(worker() for _ in range(max(1, args.jobs))))
    elapsed = time.perf_counter() - started
    if failures:
        console.print(f"stored {stored['files']} of {len(paths)} files before the error")
        return _fail(failures[0])
    console.print(
        f"ingested {len(paths)} files as {stored['chunks']} chunks "
        f"({stored['chunks'] / elapsed:.0f} chunks/s)"
    )
    return 0


async def query(args: argparse.Namespace) -> int:
    """Ask a question and print the answer, its sources and timings."""
    options = query_service_pb2.QueryOptions(top_k=args.top_k, provider=args.provider)
    async with client_channel(args.target, getattr(args, "tls", None)) as channel:
        stub = query_service_pb2_grpc.QueryServiceStub(channel)
        try:
            if args.stream:
                reply = await _stream_answer(stub, args, options)
            else:
                reply = await stub.Query(
                    query_service_pb2.QueryRequest(question=args.question, options=options),
                    metadata=_metadata(args),
                    timeout=args.timeout,
                )
                console.print(reply.text, markup=False, highlight=False)
        except grpc.aio.AioRpcError as exc:
            return _fail(exc)
    print_answer_details(reply)
    return 0


async def eval_command(args: argparse.Namespace) -> int:
    """Score retrieval on a labelled question set; with --compare, each search side by side."""
    questions = evaluate.load_questions(args.questions, args.split)
    if not questions:
        where = f" with split {args.split!r}" if args.split else ""
        console.print(f"no questions in {args.questions}{where}")
        return 1
    variants = evaluate.COMPARED if args.compare else (evaluate.DEFAULT,)
    async with client_channel(args.target, getattr(args, "tls", None)) as channel:
        try:
            if args.documents:
                chunks = await evaluate.ingest(
                    channel, args.documents, _metadata(args), args.timeout
                )
                console.print(f"ingested {args.documents} as {chunks} chunks")
            outcomes = await evaluate.evaluate(
                channel,
                questions,
                variants,
                _metadata(args),
                timeout_s=args.timeout,
                provider=args.provider,
            )
        except grpc.aio.AioRpcError as exc:
            return _fail(exc)
    console.print(eval_table(outcomes, len(questions)))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(evaluate.to_json(outcomes))
        console.print(f"[dim]written to {args.json}[/dim]")
    return 0


def eval_table(outcomes: list[evaluate.Outcome], questions: int) -> Table:
    """One row per variant: ranking quality, citations, latency and what degraded."""
    table = Table(title=f"{questions} questions")
    table.add_column("search", no_wrap=True)
    for column in ("R@1", "R@5", "R@10", "MRR@10", "nDCG@10", "cites", "p50 ms", "p95 ms"):
        table.add_column(column, justify="right")
    table.add_column("notes")
    for o in outcomes:
        notes = [f"{reason}: {n}" for reason, n in sorted(o.degraded.items())]
        if o.cached:
            notes.append(f"cached: {o.cached}")
        table.add_row(
            o.variant,
            *(f"{o.recall[k]:.3f}" for k in evaluate.CUTOFFS),
            f"{o.mrr_at_10:.3f}",
            f"{o.ndcg_at_10:.3f}",
            f"{o.cites_relevant:.2f}",
            f"{o.latency_ms.get('p50', 0):.0f}",
            f"{o.latency_ms.get('p95', 0):.0f}",
            ", ".join(notes),
        )
    return table


async def _stream_answer(stub, args, options) -> query_service_pb2.QueryResponse:
    request = query_service_pb2.StreamQueryRequest(question=args.question, options=options)
    done = query_service_pb2.QueryResponse()
    async for message in stub.StreamQuery(request, metadata=_metadata(args), timeout=args.timeout):
        if message.HasField("delta"):
            console.print(message.delta, end="", markup=False, highlight=False, soft_wrap=True)
        elif message.HasField("done"):
            done = message.done
    console.print()
    return done


def print_answer_details(reply: query_service_pb2.QueryResponse) -> None:
    """Numbered sources, then the provider and per-stage timings."""
    console.print("\n[bold]Sources[/bold]")
    for number, source in enumerate(reply.sources, start=1):
        label = source.title or source.document_id
        console.print(
            f"  [{number}] {label} ({source.document_id}#{source.chunk_index}, "
            f"score {source.score:.3f})",
            markup=False,
            highlight=False,
        )
    t, u = reply.timings, reply.usage
    cited = ", ".join(f"[{n}]" for n in reply.cited_sources) or "none"
    if reply.cache == "semantic":
        console.print(
            f"\n(cached answer to: {reply.cached_question!r}, similarity "
            f"{reply.cache_similarity:.3f})",
            markup=False,
        )
    elif reply.cache:
        console.print(f"\n(cached answer: {reply.cache})")
    if reply.degraded:
        console.print(f"[yellow]degraded: {', '.join(reply.degraded)}[/yellow]")
    # Said whenever a provider before it failed or declined (a local model too slow for the
    # time left): otherwise an extractive answer after a long wait is a mystery.
    tried = f" (after {', '.join(reply.failed_providers)} failed)" if reply.failed_providers else ""
    console.print(
        f"\nprovider {reply.provider}{tried} | cites {cited} | tokens {u.input_tokens} in, "
        f"{u.output_tokens} out, ${u.cost_usd:.6f}\nembed {t.embed_ms:.1f} ms | retrieve "
        f"{t.retrieve_ms:.1f} ms | generate {t.generate_ms:.1f} ms | total {t.total_ms:.1f} ms",
        highlight=False,
    )


async def health(args: argparse.Namespace) -> int:
    """Each service's health and its dependencies (exit 1 if any is not SERVING)."""
    if args.service:
        targets = dict(args.service)
    else:
        cluster = LocalCluster(args.data_dir)
        targets = {s: cluster.address(s) for s in SERVICES} | {"query": args.target}
    table = Table("service", "serving", "overall", "dependency", "state", "breaker", "ms", "detail")
    signals = Table()
    for header in ("service", "signal", "state", "value", "warning", "critical", "detail"):
        signals.add_column(header, no_wrap=header == "signal")  # which one tripped, whole
    unhealthy = 0
    for service, address in targets.items():
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


_DETAILS = "/rag.v1.HealthDetailsService/GetHealthDetails"


def _details_credential(args: argparse.Namespace, service: str) -> list[tuple[str, str]]:
    """Health details are an operator's: the API key on the public port, the suite's own
    signature, as an operator, on an internal one."""
    if base_service(service) == "query":
        return _metadata(args)
    return _credentials(args).metadata(base_service(service), OPERATOR_CLI, method=_DETAILS)


async def health_details(address: str, metadata: list[tuple[str, str]]):
    """HealthDetailsService's report, or None when the service does not answer (or
    refuses the credential)."""
    async with client_channel(address) as channel:
        stub = health_details_service_pb2_grpc.HealthDetailsServiceStub(channel)
        try:
            return await stub.GetHealthDetails(
                health_details_service_pb2.GetHealthDetailsRequest(),
                timeout=3.0,
                metadata=metadata,
            )
        except grpc.aio.AioRpcError:
            return None


async def probe(args: argparse.Namespace) -> int:
    """Print the standard health status of one address; exit 0 only if SERVING (what a
    container health check runs: no credential, no rendering, one call)."""
    status = await health_status(args.address, call_timeout_s=min(args.timeout, 5.0))
    print(status)
    return int(status != "SERVING")


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
    name = health_details_service_pb2.HealthState.Name(value).removeprefix("HEALTH_STATE_")
    colour = {"HEALTHY": "green", "DEGRADED": "yellow"}.get(name, "red")
    return f"[{colour}]{name.lower()}[/{colour}]"


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


async def keys_command(args: argparse.Namespace) -> int:
    """Print a new key once and the settings entry (its digest) that admits it."""
    roles = args.roles or ["reader"]
    try:
        ApiKey(tenant=args.tenant, roles=roles, principal=args.principal)
    except ValidationError as exc:
        console.print(f"[red]{exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}[/red]")
        return 2
    sys.stdout.write(keys.create(args.tenant, roles, args.principal))
    return 0


async def advise_command(args: argparse.Namespace) -> int:
    """Print each recommendation with its figures (exit 1 if no endpoint answered)."""
    if args.metrics:
        targets = [tuple(pair) for pair in args.metrics]
    else:
        cluster = LocalCluster(args.data_dir)
        targets = [(s, cluster.metrics_url(s)) for s in SERVICES]
    scrapes = []
    for service, url in targets:
        try:
            scrapes.append((service, await asyncio.to_thread(advise.scrape, url)))
        except OSError as exc:
            console.print(f"[yellow]{service}: no metrics at {url} ({exc})[/yellow]")
    if not scrapes:
        return 1
    found = advise.advise(advise.Metrics.parse(scrapes), advise.Budget(p95_s=args.p95_budget_s))
    if not found:
        console.print("[green]nothing to change: every rule is within its budget[/green]")
    for item in found:
        table = Table(title=f"{item.rule}: {item.message}", title_justify="left", show_header=False)
        for figure, value in item.evidence.items():
            table.add_row(figure, value)
        console.print(table)
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
    session = asyncio.ensure_future(_serve(cluster, args))
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


async def _serve(cluster: LocalCluster, args: argparse.Namespace) -> None:
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
        await ingest(argparse.Namespace(**vars(args), paths=demo_paths, jobs=2))
        console.print(f"\n[bold]Q:[/bold] {DEMO_QUESTION}")
        # Extractive: grounded and instant. The packaged 135M-parameter local model shows
        # the LLM path works but drifts on long technical context; try it with --provider.
        demo = argparse.Namespace(
            **vars(args), question=DEMO_QUESTION, top_k=0, provider="extractive", stream=True
        )
        await query(demo)
        console.print('[dim]also try: rag query "your question" --provider local[/dim]')
    console.print("\nserving; press Ctrl-C to stop")
    await keep_running(cluster, lambda line: console.print(f"[yellow]{line}[/yellow]"))


def _credentials(args: argparse.Namespace) -> Credentials:
    # Backups are operator calls on an internal port: signed like the suite's own.
    return Credentials(CliSettings().identity_key or local_identity_key(args.data_dir), "cli")


async def backup(args: argparse.Namespace) -> int:
    """Archive the whole vector store into a file."""
    try:
        path = await create_backup(
            args.retrieval, args.destination, args.keep, args.timeout, _credentials(args)
        )
    except grpc.aio.AioRpcError as exc:
        return _fail(exc)
    console.print(f"backed up to {path} ({path.stat().st_size} bytes)")
    return 0


async def restore(args: argparse.Namespace) -> int:
    """Replace the whole vector store with an archive, and invalidate cached answers."""
    try:
        chunks = await restore_backup(
            args.retrieval, args.archive, args.redis_url, args.timeout, _credentials(args)
        )
    except grpc.aio.AioRpcError as exc:
        return _fail(exc)
    console.print(f"restored {args.archive}: {chunks} chunks")
    if not args.redis_url:
        console.print(
            "[yellow]no Redis given: restart the query service so that no answer cached "
            "before the restore is served[/yellow]"
        )
    return 0


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


def parser() -> argparse.ArgumentParser:
    """The argument parser of `rag`."""
    settings = CliSettings()
    p = argparse.ArgumentParser(prog="rag", description=__doc__)
    p.add_argument("--target", default=settings.target, help="QueryService address")
    p.add_argument("--api-key", default=settings.api_key, help="API key (env RAG_API_KEY)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per call")
    p.add_argument("--data-dir", type=Path, default=settings.data_dir)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("up", help="start the four services locally")
    s.add_argument("--demo", action="store_true", help="ingest the docs and ask a question")
    s.add_argument(
        "--tls", action="store_true", help="TLS on every port, mTLS between the services"
    )
    s.set_defaults(func=up)

    s = sub.add_parser("serve", help="run one service in the foreground (what a container runs)")
    s.add_argument("service", choices=SERVICES)
    s.set_defaults(func=None)

    s = sub.add_parser("ingest", help="ingest .md, .txt and .rst files and folders")
    s.add_argument("paths", nargs="+")
    s.add_argument(
        "--jobs", type=int, default=2, help="calls in flight at once (keeps the encoder busy)"
    )
    s.set_defaults(func=ingest)

    s = sub.add_parser("query", help="ask a question")
    s.add_argument("question")
    s.add_argument("--top-k", type=int, default=0)
    s.add_argument("--provider", default="", help="provider to try first")
    s.add_argument("--stream", action="store_true", help="print the answer as it is written")
    s.set_defaults(func=query)

    s = sub.add_parser("eval", help="score retrieval on a labelled question set")
    s.add_argument("questions", type=Path, help='JSONL: {"id", "question", "relevant": [ids]}')
    s.add_argument("--documents", type=Path, help='JSONL {"id", "text", "title"} to ingest first')
    s.add_argument("--split", default="", help='only questions with this "split" (e.g. test)')
    s.add_argument("--compare", action="store_true", help="dense, hybrid and hybrid+rerank")
    s.add_argument("--provider", default="extractive", help="provider that writes answers")
    s.add_argument("--json", type=Path, help="also write the figures to this file")
    s.set_defaults(func=eval_command)

    s = sub.add_parser("backup", help="archive the whole vector store (operator)")
    s.add_argument("destination", type=Path, help="a .tar.gz file, or a folder for a new one")
    s.add_argument("--retrieval", default="127.0.0.1:50052", help="RetrievalService address")
    s.add_argument("--keep", type=int, default=0, help="keep only the newest N in the folder")
    s.set_defaults(func=backup)

    s = sub.add_parser("restore", help="replace the whole vector store with an archive")
    s.add_argument("archive", type=Path)
    s.add_argument("--retrieval", default="127.0.0.1:50052", help="RetrievalService address")
    s.add_argument(
        "--redis-url",
        default=settings.redis_url,
        help="the query service's Redis (env RAG_QUERY_REDIS_URL), to invalidate its caches",
    )
    s.set_defaults(func=restore)

    s = sub.add_parser("health", help="health of each service")
    s.add_argument(
        "--service",
        nargs=2,
        action="append",
        metavar=("NAME", "ADDRESS"),
        help="check this service at this address instead of the local defaults",
    )
    s.set_defaults(func=health)

    s = sub.add_parser("probe", help="exit 0 if the service at ADDRESS is SERVING")
    s.add_argument("address", help="host:port of any of the four services (plaintext)")
    s.set_defaults(func=probe)

    s = sub.add_parser("certs", help="a development CA and a certificate per service")
    s.add_argument("folder", type=Path)
    s.add_argument(
        "--host",
        dest="hosts",
        action="append",
        default=[],
        help="a DNS name or IP the certificates are valid for (repeat); always localhost "
        "and 127.0.0.1",
    )
    s.set_defaults(func=certs_command)

    s = sub.add_parser("keys", help="API keys")
    s.add_argument("action", choices=["create"])
    s.add_argument("--tenant", required=True)
    s.add_argument(
        "--role", dest="roles", action="append", choices=ROLES, help="repeat for several"
    )
    s.add_argument("--principal", default="", help="who the key is for (shown in logs)")
    s.set_defaults(func=keys_command)

    s = sub.add_parser("advise", help="cost and capacity advice from the live metrics")
    s.add_argument(
        "--metrics",
        nargs=2,
        action="append",
        metavar=("SERVICE", "URL"),
        help="a process's /metrics (repeat per replica) instead of the local defaults",
    )
    s.add_argument("--p95-budget-s", type=float, default=2.0, help="latency budget of a query")
    s.set_defaults(func=advise_command)
    return p


def main(argv: list[str] | None = None) -> None:
    """Entry point of `rag`."""
    args = parser().parse_args(argv)
    if args.command == "serve":
        serve(args.service)
        return
    started = time.perf_counter()
    try:
        code = asyncio.run(args.func(args))
    except KeyboardInterrupt:
        # Ctrl-C is how `rag up` is meant to end; its services were already stopped.
        code = 0 if args.command == "up" else 130
    except (FileNotFoundError, evaluate.BadInput) as exc:
        console.print(f"[red]{exc}[/red]")
        code = 2
    if code == 0 and args.command not in ("up", "health", "probe", "advise", "keys", "certs"):
        console.print(f"[dim]{time.perf_counter() - started:.2f}s[/dim]")
    sys.exit(code)
