"""`rag eval`: score retrieval on a labelled question set, each search side by side."""

from __future__ import annotations

import argparse

from rich.table import Table

from rag_cli import evaluate
from rag_cli.launcher import client_channel
from rag_cli.output import bearer, console


async def eval_command(args: argparse.Namespace) -> int:
    """Score retrieval on a labelled question set; with --compare, each search side by side."""
    questions = evaluate.load_questions(args.questions, args.split)
    if not questions:
        where = f" with split {args.split!r}" if args.split else ""
        console.print(f"no questions in {args.questions}{where}")
        return 1
    variants = evaluate.COMPARED if args.compare else (evaluate.DEFAULT,)
    async with client_channel(args.target) as channel:
        if args.documents:
            chunks = await evaluate.ingest(
                channel, args.documents, bearer(args.api_key), args.timeout
            )
            console.print(f"ingested {args.documents} as {chunks} chunks")
        outcomes = await evaluate.evaluate(
            channel,
            questions,
            variants,
            bearer(args.api_key),
            timeout_s=args.timeout,
            provider=args.provider,
        )
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
    columns = ("R@1", "R@5", "R@10", "MRR@10", "nDCG@10", "cites", "page", "p50 ms", "p95 ms")
    for column in columns:
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
            f"{o.cites_page:.2f}" if o.paged else "-",
            f"{o.latency_ms.get('p50', 0):.0f}",
            f"{o.latency_ms.get('p95', 0):.0f}",
            ", ".join(notes),
        )
    return table
