"""Operator commands: `rag backup`, `rag restore`, `rag keys` and `rag advise`."""

from __future__ import annotations

import argparse
import asyncio
import sys

from pydantic import ValidationError
from rich.table import Table

from rag_cli import advise, keys
from rag_cli.backup import create_backup, reindex, restore_backup
from rag_cli.launcher import SERVICES, LocalCluster, local_identity_key
from rag_cli.output import console
from rag_cli.settings import CliSettings
from rag_common.security.credentials import Credentials
from rag_query.config import ApiKey


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


def operator_credentials(args: argparse.Namespace) -> Credentials:
    """The suite's own signature, for operator calls on an internal port (backups, health
    details): the key in RAG_IDENTITY_KEY, else the one `rag up` made."""
    return Credentials(CliSettings().identity_key or local_identity_key(args.data_dir), "cli")


async def backup(args: argparse.Namespace) -> int:
    """Archive the whole vector store into a file."""
    path = await create_backup(
        args.retrieval, args.destination, args.keep, args.timeout, operator_credentials(args)
    )
    console.print(f"backed up to {path} ({path.stat().st_size} bytes)")
    return 0


async def restore(args: argparse.Namespace) -> int:
    """Replace the whole vector store with an archive, and invalidate cached answers."""
    chunks = await restore_backup(
        args.retrieval, args.archive, args.redis_url, args.timeout, operator_credentials(args)
    )
    console.print(f"restored {args.archive}: {chunks} chunks")
    _restart_hint(args.redis_url, "the restore")
    return 0


async def reindex_command(args: argparse.Namespace) -> int:
    """Rebuild every stored vector with the embedding model now, and invalidate caches."""
    reply = await reindex(args.retrieval, args.redis_url, args.timeout, operator_credentials(args))
    console.print(
        f"rebuilt {reply.chunks} chunks with {reply.model} ({reply.dimension} dimensions)"
    )
    _restart_hint(args.redis_url, "the rebuild")
    return 0


def _restart_hint(redis_url: str, change: str) -> None:
    if not redis_url:
        console.print(
            "[yellow]no Redis given: restart the query service so that no answer cached "
            f"before {change} is served[/yellow]"
        )
