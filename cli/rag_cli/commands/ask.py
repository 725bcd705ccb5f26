"""`rag ingest` and `rag query`: put documents in and ask about them."""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from pathlib import Path

import grpc
from rich.progress import Progress

from rag.v1 import (
    document_service_pb2,
    document_service_pb2_grpc,
    query_service_pb2,
    query_service_pb2_grpc,
)
from rag_cli import files
from rag_cli.launcher import client_channel
from rag_cli.output import bearer, console, fail
from rag_common import status
from rag_common.security.tls import TlsFiles


async def ingest(args: argparse.Namespace) -> int:
    """Ingest files and folders, `--jobs` calls at a time, with progress and chunks/s."""
    return await ingest_paths(
        args.target, args.paths, api_key=args.api_key, jobs=args.jobs, timeout_s=args.timeout
    )


async def query(args: argparse.Namespace) -> int:
    """Ask a question and print the answer, its sources and timings."""
    return await ask(
        args.target,
        args.question,
        api_key=args.api_key,
        options=query_service_pb2.QueryOptions(top_k=args.top_k, provider=args.provider),
        stream=args.stream,
        timeout_s=args.timeout,
    )


async def ingest_paths(
    target: str,
    paths: list[str],
    *,
    api_key: str,
    jobs: int,
    timeout_s: float,
    tls: TlsFiles | None = None,
) -> int:
    """Ingest the files under `paths` with a progress bar; 0, or 1 after the first error."""
    found = files.find_files(paths)
    if not found:
        console.print("no supported files (PDF, HTML, DOCX, Markdown, reStructuredText, text)")
        return 1
    stored = {"files": 0, "chunks": 0}
    failures: list[grpc.aio.AioRpcError] = []
    started = time.perf_counter()
    async with client_channel(target, tls) as channel:
        stub = document_service_pb2_grpc.DocumentServiceStub(channel)
        with Progress(console=console, transient=len(found) < 2) as progress:
            task = progress.add_task("ingesting", total=len(found))
            pending = iter(files.batches(found))

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
                            request, metadata=bearer(api_key), timeout=timeout_s
                        )
                    except grpc.aio.AioRpcError as exc:
                        failures.append(exc)
                        refused = _refused_file(exc, batch)
                        if refused is not None:
                            console.print(f"[red]refused: {refused}[/red]", highlight=False)
                        return
                    for path, document in zip(batch, reply.documents, strict=False):
                        if document.pages_without_text:
                            pages = ", ".join(map(str, document.pages_without_text))
                            console.print(
                                f"[yellow]{path}: no text on page {pages} of "
                                f"{document.pages} (scanned? run OCR first)[/yellow]",
                                highlight=False,
                            )
                    stored["files"] += len(batch)
                    stored["chunks"] += sum(d.chunks for d in reply.documents)
                    rate = stored["chunks"] / (time.perf_counter() - started)
                    progress.update(
                        task, advance=len(batch), description=f"ingesting, {rate:.0f} chunks/s"
                    )

            await asyncio.gather(*(worker() for _ in range(max(1, jobs))))
    elapsed = time.perf_counter() - started
    if failures:
        console.print(f"stored {stored['files']} of {len(found)} files before the error")
        return fail(failures[0])
    console.print(
        f"ingested {len(found)} files as {stored['chunks']} chunks "
        f"({stored['chunks'] / elapsed:.0f} chunks/s)"
    )
    return 0


def _refused_file(exc: grpc.aio.AioRpcError, batch: list[Path]) -> Path | None:
    """The file of `batch` a refusal names (its field is `documents[i]...`), if any."""
    info = status.error_info(exc)
    found = re.match(r"documents\[(\d+)\]", info.metadata.get("field", "") if info else "")
    if found and int(found.group(1)) < len(batch):
        return batch[int(found.group(1))]
    return None


async def ask(
    target: str,
    question: str,
    *,
    api_key: str,
    options: query_service_pb2.QueryOptions,
    stream: bool,
    timeout_s: float,
    tls: TlsFiles | None = None,
) -> int:
    """Ask `question`, print the answer (as it is written, with `stream`) and its details;
    a failed call raises its AioRpcError."""
    async with client_channel(target, tls) as channel:
        stub = query_service_pb2_grpc.QueryServiceStub(channel)
        if stream:
            reply = await _stream_answer(stub, question, options, api_key, timeout_s)
        else:
            reply = await stub.Query(
                query_service_pb2.QueryRequest(question=question, options=options),
                metadata=bearer(api_key),
                timeout=timeout_s,
            )
            console.print(reply.text, markup=False, highlight=False)
    print_answer_details(reply)
    return 0


async def _stream_answer(
    stub: query_service_pb2_grpc.QueryServiceStub,
    question: str,
    options: query_service_pb2.QueryOptions,
    api_key: str,
    timeout_s: float,
) -> query_service_pb2.QueryResponse:
    request = query_service_pb2.StreamQueryRequest(question=question, options=options)
    done = query_service_pb2.QueryResponse()
    async for message in stub.StreamQuery(request, metadata=bearer(api_key), timeout=timeout_s):
        if message.HasField("delta"):
            console.print(message.delta, end="", markup=False, highlight=False, soft_wrap=True)
        elif message.HasField("done"):
            done = message.done
    console.print()
    return done


def source_label(source) -> str:
    """Where a source is, as a reader looks it up: `report.pdf, page 7, "3.2 Limits"`."""
    parts = [source.title or source.document_id]
    if source.page:
        parts.append(f"page {source.page}")
    if source.section and source.section != parts[0]:
        parts.append(f'"{source.section}"')
    return ", ".join(parts)


def print_answer_details(reply: query_service_pb2.QueryResponse) -> None:
    """Numbered sources, then the provider and per-stage timings."""
    console.print("\n[bold]Sources[/bold]")
    for number, source in enumerate(reply.sources, start=1):
        console.print(
            f"  [{number}] {source_label(source)} ({source.document_id}#{source.chunk_index}, "
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
