"""Documents as files, measured: files tried and refused by reason over public corpora and
hostile files, the sandbox's cost against the raw reader (PDF pages/s), PDFs ingested through
the suite (pages/s and chunks/s) against reading and chunking them in one process, and another
tenant's question p95 while a hostile batch is ingested, against its p95 alone.

    python -m rag_bench.documents --pdf DIR --html DIR --docx DIR

The folders hold real files (for example py-pdf/sample-files, trafilatura's tests/cache,
python-docx's test files); the hostile files are made here. The ingest and neighbour figures
run the four services as processes on free ports of 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc

from rag.v1 import common_pb2
from rag.v1 import document_service_pb2 as doc_pb
from rag.v1 import document_service_pb2_grpc as doc_grpc
from rag.v1 import query_service_pb2 as pb
from rag.v1 import query_service_pb2_grpc as pb_grpc
from rag_cli.launcher import LocalCluster
from rag_common.errors import InvalidArgument
from rag_query.conversion import media
from rag_query.conversion.converters import convert
from rag_query.conversion.sandbox import Sandbox
from rag_retrieval.chunking import chunk_document
from rag_retrieval.config import RetrievalSettings

KEYS = {
    "a-key": {"tenant": "a", "roles": ["writer", "reader"]},
    "b-key": {"tenant": "b", "roles": ["writer", "reader"]},
}


def hostile() -> dict[str, bytes]:
    """Files made to hurt a parser: a zip bomb, deep nesting, a huge page, a cut PDF."""
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", b" " * 50_000_000)
    page = b"".join(b"<p>Paragraph %d of a very long page.</p>" % i for i in range(120_000))
    return {
        "zip-bomb.docx": bomb.getvalue(),
        "nested.html": b"<html><body>" + b"<div>" * 200_000 + b"x" + b"</div>" * 200_000,
        "huge-page.html": b"<html><body><main>" + page + b"</main></body></html>",
        "cut.pdf": b"%PDF-1.7\n1 0 obj << /Type /Catalog >>",
        "binary.bin": bytes(range(256)) * 64,
    }


async def robustness(files: dict[str, bytes]) -> Counter[str]:
    """Each file through the sandbox with its default limits: its outcome by reason."""
    sandbox, outcomes = Sandbox(), Counter[str]()
    for content in files.values():
        try:
            kind = media.sniff(content)
            await sandbox.convert(content, kind, field="content")
            outcomes["converted"] += 1
        except InvalidArgument as refused:
            outcomes[refused.reason] += 1
    return outcomes


def readable_pdfs(files: dict[str, bytes]) -> dict[str, int]:
    """The PDFs the reader converts, with their page counts; refused ones take no part in
    throughput."""
    readable = {}
    for name, content in files.items():
        try:
            readable[name] = convert(content, media.PDF, 10_000_000).pages
        except Exception:
            continue
    return readable


async def pdf_pages_per_s(files: dict[str, bytes], readable: dict[str, int]) -> tuple[float, float]:
    """PDF pages a second: the raw reader in this process, and through the sandbox."""
    pages = sum(readable.values())
    started = time.perf_counter()
    for name in readable:
        convert(files[name], media.PDF, 10_000_000)
    raw = pages / (time.perf_counter() - started)
    sandbox = Sandbox()
    await sandbox.convert(next(iter(files.values())), media.PDF, field="warm")  # fork server
    started = time.perf_counter()
    for name in readable:
        await sandbox.convert(files[name], media.PDF, field="content")
    return raw, pages / (time.perf_counter() - started)


def chunks_per_s_in_process(
    files: dict[str, bytes], readable: dict[str, int]
) -> tuple[list[str], float]:
    """The PDFs' chunks, and chunks a second from reading and chunking them in this process
    with the store's chunk size: what ingestion costs before any embedding, hop or write."""
    settings = RetrievalSettings()
    started, chunks = time.perf_counter(), []
    for name in readable:
        text = convert(files[name], media.PDF, 10_000_000).text
        chunks += chunk_document(text, settings.chunk_size, settings.chunk_overlap)
    return [c.text for c in chunks], len(chunks) / (time.perf_counter() - started)


def embedded_per_s_in_process(texts: list[str], batch: int = 32) -> float:
    """Chunks a second the embedding model encodes in this process, 32 at a time, on the
    backend the service runs: the floor under any ingest."""
    from rag_embedding.__main__ import model_loader
    from rag_embedding.config import EmbeddingSettings
    from rag_embedding.embedder import Purpose

    model = model_loader(EmbeddingSettings(batch_size=batch))()
    model.encode(texts[:batch], Purpose.DOCUMENT)
    started = time.perf_counter()
    for start in range(0, len(texts), batch):
        model.encode(texts[start : start + batch], Purpose.DOCUMENT)
    return len(texts) / (time.perf_counter() - started)


@asynccontextmanager
async def suite() -> AsyncIterator[grpc.aio.Channel]:
    """The four services as processes on free ports; a channel to the public one."""
    with tempfile.TemporaryDirectory(prefix="rag-documents-") as folder:
        cluster = LocalCluster.on_free_ports(
            Path(folder), env={"RAG_QUERY_API_KEYS": json.dumps(KEYS)}
        )
        cluster.start()
        try:
            await cluster.wait_serving(within_s=240)
            async with grpc.aio.insecure_channel(cluster.address("query")) as channel:
                yield channel
        finally:
            cluster.stop()


async def ingested_per_s(
    channel: grpc.aio.Channel, files: dict[str, bytes], readable: dict[str, int]
) -> tuple[int, float, float]:
    """The readable PDFs ingested one call each through the public API, one after another:
    (chunks stored, pages/s, chunks/s). Run once per suite: a second run of the same chunks
    would find their vectors in the embedding cache."""
    docs = doc_grpc.DocumentServiceStub(channel)
    started, chunks = time.perf_counter(), 0
    for name in readable:
        document = common_pb2.Document(id=f"pdf/{name}", content=files[name])
        reply = await docs.IngestDocuments(
            doc_pb.IngestDocumentsRequest(documents=[document]),
            metadata=[("authorization", "Bearer a-key")],
            timeout=120,
        )
        chunks += reply.documents[0].chunks
    elapsed = time.perf_counter() - started
    return chunks, sum(readable.values()) / elapsed, chunks / elapsed


async def neighbour_p95(
    channel: grpc.aio.Channel, files: dict[str, bytes], rounds: int = 3
) -> tuple[float, float]:
    """Tenant b's question p95 alone, then while tenant a ingests `files` again and again."""
    docs, query = doc_grpc.DocumentServiceStub(channel), pb_grpc.QueryServiceStub(channel)
    note = common_pb2.Document(id="kiln", text="The kiln fires at 1200 degrees.")
    await docs.IngestDocuments(
        doc_pb.IngestDocumentsRequest(documents=[note]),
        metadata=[("authorization", "Bearer b-key")],
        timeout=60,
    )

    async def ask(n: int) -> float:
        request = pb.QueryRequest(
            question=f"How hot does the kiln fire, question {n}?",
            options=pb.QueryOptions(provider="extractive"),
        )
        started = time.perf_counter()
        await query.Query(request, metadata=[("authorization", "Bearer b-key")])
        return (time.perf_counter() - started) * 1000

    alone = [await ask(n) for n in range(40)]
    stop = asyncio.Event()

    async def flood() -> None:
        while not stop.is_set():
            for name, content in files.items():
                document = common_pb2.Document(id=f"f-{len(name)}", content=content)
                try:
                    await docs.IngestDocuments(
                        doc_pb.IngestDocumentsRequest(documents=[document]),
                        metadata=[("authorization", "Bearer a-key")],
                        timeout=60,
                    )
                except grpc.aio.AioRpcError:
                    pass  # refused: what a hostile file is for

    flooding = asyncio.ensure_future(flood())
    await asyncio.sleep(1.0)
    during = [await ask(100 + n) for n in range(40 * rounds)]
    stop.set()
    await flooding
    p95 = lambda values: statistics.quantiles(values, n=20)[18]  # noqa: E731
    return p95(alone), p95(during)


def read(folder: str | None) -> dict[str, bytes]:
    """Every non-empty file of `folder`, by name."""
    if not folder:
        return {}
    return {
        p.name: p.read_bytes()
        for p in sorted(Path(folder).iterdir())
        if p.is_file() and p.stat().st_size
    }


async def run(args: argparse.Namespace) -> None:
    """Print every figure."""
    corpora = {kind: read(getattr(args, kind)) for kind in ("pdf", "html", "docx")}
    for kind, files in corpora.items():
        if files:
            outcomes = await robustness(files)
            print(
                f"{kind}: {len(files)} files: "
                + ", ".join(f"{k} {v}" for k, v in outcomes.most_common())
            )
    outcomes = await robustness(hostile())
    print(
        f"hostile: {len(hostile())} files: "
        + ", ".join(f"{k} {v}" for k, v in outcomes.most_common())
    )
    pdfs = corpora["pdf"]
    readable = readable_pdfs(pdfs)
    if readable:
        raw, boxed = await pdf_pages_per_s(pdfs, readable)
        pages = sum(readable.values())
        print(f"pdf: {pages} pages: {raw:.0f} pages/s in process, {boxed:.0f} pages/s sandboxed")
        chunks, chunked = chunks_per_s_in_process(pdfs, readable)
        print(f"pdf: {len(chunks)} chunks: {chunked:.0f} chunks/s read and chunked in process")
        encoded = embedded_per_s_in_process(chunks)
        print(f"pdf: the same chunks embedded in process, 32 a call: {encoded:.1f} chunks/s")
    async with suite() as channel:
        if readable:
            stored, pages_per_s, chunks_per_s = await ingested_per_s(channel, pdfs, readable)
            print(
                f"pdf: ingested through the suite, one file a call: {pages_per_s:.1f} pages/s, "
                f"{chunks_per_s:.1f} chunks/s ({stored} chunks)"
            )
        alone, during = await neighbour_p95(channel, hostile())
    print(
        f"tenant b's p95 alone {alone:.1f} ms, while tenant a ingests hostile files "
        f"{during:.1f} ms ({during / alone:.2f}x)"
    )


def main() -> None:
    """`python -m rag_bench.documents`."""
    parser = argparse.ArgumentParser(prog="rag_bench.documents", description=__doc__)
    for kind in ("pdf", "html", "docx"):
        parser.add_argument(f"--{kind}", help=f"a folder of real {kind.upper()} files")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
