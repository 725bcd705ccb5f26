"""Retrieval at scale: 100,000 synthetic chunks in the embedded store, searched through a
RetrievalService process with the tenant filter on; build time, search latency, disk, RSS."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import grpc
import numpy as np

from rag.v1 import common_pb2
from rag.v1 import retrieval_service_pb2 as pb
from rag.v1 import retrieval_service_pb2_grpc as pb_grpc
from rag_bench.stats import Run
from rag_cli.launcher import LocalCluster
from rag_common.security.identity import Identity
from rag_retrieval.adapters.edge_store import EdgeStore
from rag_retrieval.lexical import Bm25Terms
from rag_retrieval.models import ChunkRecord
from rag_retrieval.retriever import chunk_id

DIMENSION = 384
TENANTS = 20
CHUNKS_PER_DOCUMENT = 8
BATCH = 1000
SEARCHES = 1000
STORE_P95_TARGET_MS = 5.0
_WORDS = (
    "invoice refund policy server cluster backup restore latency quota tenant index shard "
    "replica token budget cache breaker retry deadline stream chunk vector filter schema "
    "release upgrade rollback certificate secret audit metric trace alert dashboard"
).split()


def _records(start: int, rng: np.random.Generator, terms: Bm25Terms) -> list[ChunkRecord]:
    vectors = rng.standard_normal((BATCH, DIMENSION)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    words = random.Random(start)
    records = []
    for offset, vector in enumerate(vectors):
        n = start + offset
        tenant, document = f"tenant-{n % TENANTS}", f"doc-{n // CHUNKS_PER_DOCUMENT}"
        index = n % CHUNKS_PER_DOCUMENT
        text = " ".join(words.choices(_WORDS, k=60)) + f" item{n}"
        records.append(
            ChunkRecord(
                id=chunk_id(tenant, document, index),
                tenant=tenant,
                document_id=document,
                chunk_index=index,
                text=text,
                vector=vector.tolist(),
                chunk_count=CHUNKS_PER_DOCUMENT,
                terms=terms.document(text),
                metadata={"lang": "en" if n % 3 else "de"},
            )
        )
    return records


async def build(folder: Path, chunks: int) -> tuple[float, float]:
    """Write `chunks` chunks over TENANTS tenants; (seconds to upsert, seconds to optimise)."""
    store = EdgeStore(folder, DIMENSION)
    await store.open()
    rng, terms = np.random.default_rng(5), Bm25Terms(800)
    started = time.perf_counter()
    for start in range(0, chunks, BATCH):
        await store.upsert(_records(start, rng, terms))
    upserted = time.perf_counter()
    await store.optimize()
    optimised = time.perf_counter()
    await store.close()
    return upserted - started, optimised - upserted


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _disk_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1024**2


async def _searches(cluster: LocalCluster, hybrid: bool, concurrency: int) -> Run:
    credentials = cluster.credentials("bench")
    rng = np.random.default_rng(11 + concurrency + hybrid)
    run = Run(f"{'hybrid' if hybrid else 'dense'} search", concurrency)
    pending = iter(range(SEARCHES))
    async with grpc.aio.insecure_channel(cluster.address("retrieval")) as channel:
        stub = pb_grpc.RetrievalServiceStub(channel)

        async def worker() -> None:
            for n in pending:
                vector = rng.standard_normal(DIMENSION)
                request = pb.RetrieveRequest(
                    query=f"{_WORDS[n % len(_WORDS)]} item{n * 7}" if hybrid else "",
                    query_vector=(vector / np.linalg.norm(vector)).tolist(),
                    top_k=5,
                    search_mode=(
                        common_pb2.SEARCH_MODE_HYBRID if hybrid else common_pb2.SEARCH_MODE_DENSE
                    ),
                    rerank=False,
                )
                identity = Identity("bench", f"tenant-{n % TENANTS}", frozenset({"reader"}))
                metadata = credentials.metadata(
                    "retrieval", identity, method="/rag.v1.RetrievalService/Retrieve"
                )
                started = time.perf_counter()
                reply = await stub.Retrieve(request, metadata=metadata, timeout=10)
                run.add((time.perf_counter() - started) * 1000, retrieve=reply.search_ms)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        run.wall_s = time.perf_counter() - started
    return run


async def scenario(data_dir: Path, chunks: int) -> str:
    """Build the store, serve it from a RetrievalService process, search it; the summary."""
    folder = data_dir / "qdrant-edge"
    upsert_s, optimise_s = await build(folder, chunks)
    cluster = LocalCluster.on_free_ports(data_dir)
    cluster.start(("retrieval",))
    try:
        await cluster.wait_serving()
        runs = [await _searches(cluster, hybrid, c) for hybrid in (False, True) for c in (1, 8)]
        rss = _rss_mb(cluster.processes["retrieval"].pid)
    finally:
        cluster.stop()
    lines = [
        f"\nretrieval at {chunks:,} chunks ({TENANTS} tenants, {DIMENSION} dimensions, BM25 "
        f"terms): upsert {upsert_s:.0f}s ({chunks / upsert_s:.0f} chunks/s), index build "
        f"{optimise_s:.0f}s; store on disk {_disk_mb(folder):.0f} MB, retrieval process RSS "
        f"{rss:.0f} MB after the searches",
        f"  search through RetrievalService, tenant filter on (target: store p95 <= "
        f"{STORE_P95_TARGET_MS:.0f} ms):",
    ]
    for run in runs:
        store_p95 = run.percentile(95, "retrieve")
        verdict = "met" if store_p95 <= STORE_P95_TARGET_MS else "MISSED"
        lines.append(
            f"    {run.name:<14} c{run.concurrency}: store p50 "
            f"{run.percentile(50, 'retrieve'):.2f} ms, p95 {store_p95:.2f} ms ({verdict}); "
            f"call p50 {run.percentile(50):.2f} ms, p95 {run.percentile(95):.2f} ms, "
            f"{run.rps:.0f} req/s"
        )
    return "\n".join(lines)
