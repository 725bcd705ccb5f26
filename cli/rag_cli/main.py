"""The `rag` command: up, serve, ingest, query, documents, eval, health, probe, certs, keys,
advise, backup, restore, reindex."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import grpc

from rag_cli import evaluate
from rag_cli.commands import documents
from rag_cli.commands.ask import ingest, query
from rag_cli.commands.evaluate import eval_command
from rag_cli.commands.health import health, probe
from rag_cli.commands.local import certs_command, serve, up
from rag_cli.commands.operate import (
    advise_command,
    backup,
    keys_command,
    reindex_command,
    restore,
)
from rag_cli.launcher import SERVICES
from rag_cli.output import console, fail
from rag_cli.settings import CliSettings
from rag_common.security.identity import ROLES


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

    documents.add_parser(sub)

    s = sub.add_parser("eval", help="score retrieval on a labelled question set")
    s.add_argument("questions", type=Path, help='JSONL: {"id", "question", "relevant": [ids]}')
    s.add_argument(
        "--documents",
        type=Path,
        help='JSONL {"id", "text", "title"}, or a folder of files, to ingest first',
    )
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

    s = sub.add_parser("reindex", help="rebuild every vector with the embedding model now")
    s.add_argument("--retrieval", default="127.0.0.1:50052", help="RetrievalService address")
    s.add_argument(
        "--redis-url",
        default=settings.redis_url,
        help="the query service's Redis (env RAG_QUERY_REDIS_URL), to invalidate its caches",
    )
    s.set_defaults(func=reindex_command)

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
    except grpc.aio.AioRpcError as exc:  # every command's failed call, told one way
        code = fail(exc)
    except (FileNotFoundError, evaluate.BadInput) as exc:
        console.print(f"[red]{exc}[/red]")
        code = 2
    if code == 0 and args.command not in ("up", "health", "probe", "advise", "keys", "certs"):
        console.print(f"[dim]{time.perf_counter() - started:.2f}s[/dim]")
    sys.exit(code)
