"""Fairness: one tenant's answers while another floods the suite, with questions at
concurrency 64, with a bulk ingest or with maximal documents.

Tenant B asks one question at a time, alone, then while tenant A keeps 64 questions in
flight (new ones, then one popular question the cache answers), then while A ingests
documents as fast as it can, then while A ingests two documents of the largest size
accepted. The targets (issues #9, #13): B's p95 within 1.5x of its unloaded value, and no
answer of B's degraded to no_context. A's refusals, and its ingest speed, are counted too.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from collections import Counter

import grpc

from rag.v1 import common_pb2
from rag.v1 import document_service_pb2 as doc_pb
from rag.v1 import document_service_pb2_grpc as doc_grpc
from rag.v1 import query_service_pb2 as pb
from rag.v1 import query_service_pb2_grpc as pb_grpc
from rag_bench import capacity, corpus, targets
from rag_bench.stats import Run
from rag_common.status import error_info, retry_delay

FLOOD_KEY, FLOOD_TENANT = "flood-key", "flood"
FLOOD_AUTH = [("authorization", f"Bearer {FLOOD_KEY}")]
FLOOD_CONCURRENCY = 64
MAXIMAL_DOCUMENT_CHARS = 1_000_000  # RAG_RETRIEVAL_MAX_DOCUMENT_CHARS by default
TARGET_RATIO = 1.5
QUESTIONS_PER_RUN = 100  # B's questions alone, and again under each load


async def runs(
    address: str, quiet_key: str, questions: list[str], flood_chunks: int, *, popular: bool = False
) -> str:
    """B alone, then B under A's flood: the two runs' summary, with the target beside it.
    A asks new questions, or with `popular` one question over and over: answered from the
    cache, each costs little, so A sends many more of them."""
    quiet = [("authorization", f"Bearer {quiet_key}")]
    options = pb.QueryOptions(provider="extractive")
    async with grpc.aio.insecure_channel(address) as channel:
        documents = doc_grpc.DocumentServiceStub(channel)
        for start, batch in _batches(corpus.documents(flood_chunks, seed=3), 100):
            request = doc_pb.IngestDocumentsRequest(
                documents=[common_pb2.Document(id=f"f{start}-{i}", text=t) for i, t in batch]
            )
            await documents.IngestDocuments(request, metadata=FLOOD_AUTH, timeout=300)
        stub = pb_grpc.QueryServiceStub(channel)
        half = len(questions) // 2
        alone, alone_degraded = await _ask_each(stub, questions[:half], quiet, options)
        # A floods from its own process and connection, as another client would: sharing
        # B's event loop and HTTP/2 connection would slow B down in the client itself.
        context = multiprocessing.get_context("spawn")
        stop, results = context.Event(), context.Queue()
        flooder = context.Process(target=_flood_process, args=(address, stop, results, popular))
        flooder.start()
        await asyncio.to_thread(results.get)  # the flooder is connected
        await asyncio.sleep(1.0)  # the flood is at full strength before B asks
        loaded, loaded_degraded = await _ask_each(stub, questions[half:], quiet, options)
        stop.set()
        outcomes = await asyncio.to_thread(results.get)
        flooder.join()
    asks = "one cached question over and over" if popular else "new questions"
    flood = "one popular question" if popular else "new questions"
    compared = _compared(alone, loaded, loaded_degraded, f"A floods with {flood}")
    return (
        f"\nfairness: tenant B one at a time, alone vs while tenant A floods at "
        f"c{FLOOD_CONCURRENCY} with {asks}:\n{compared}\n"
        f"  B degraded alone {dict(alone_degraded) or 'never'}; A's calls: {dict(outcomes)}"
    )


async def during_ingest(address: str, quiet_key: str, questions: list[str], chunks: int) -> str:
    """B alone, then B while A ingests `chunks` chunks, two calls at a time."""
    batches = list(_batches(corpus.documents(chunks, seed=9), 50))

    async def ingest(documents) -> float:
        started = time.perf_counter()

        async def writer(lane: int) -> None:
            for start, batch in batches[lane::2]:
                request = doc_pb.IngestDocumentsRequest(
                    documents=[common_pb2.Document(id=f"i{start}-{i}", text=t) for i, t in batch]
                )
                await documents.IngestDocuments(request, metadata=FLOOD_AUTH, timeout=300)

        await asyncio.gather(writer(0), writer(1))
        return time.perf_counter() - started

    alone, loaded, degraded, ingest_s = await _alone_then_during(
        address, quiet_key, questions, ingest
    )
    return (
        f"\nqueries during a bulk ingest: tenant B one at a time, alone vs while tenant A "
        f"ingests {chunks} chunks:\n{_compared(alone, loaded, degraded, 'A bulk-ingests')}\n"
        f"  A ingested {chunks / ingest_s:.0f} chunks/s meanwhile"
    )


async def during_maximal_ingest(address: str, quiet_key: str, questions: list[str]) -> str:
    """B alone, then B while A ingests two documents of the largest size accepted
    (1,000,000 characters, about 2,500 chunks each), one call each, cancelled once B is done:
    the embedder must drop the rest of their work."""
    text = " ".join(t for _, t in corpus.documents(2_600, seed=13))[:MAXIMAL_DOCUMENT_CHARS]

    async def ingest(documents) -> None:
        calls = [
            documents.IngestDocuments(
                doc_pb.IngestDocumentsRequest(documents=[common_pb2.Document(id=id_, text=text)]),
                metadata=FLOOD_AUTH,
                timeout=600,
            )
            for id_ in ("book-1", "book-2")
        ]
        try:
            await asyncio.gather(*calls)
        finally:
            for call in calls:
                call.cancel()  # B is done: the calls end here, as a caller giving up would

    alone, loaded, degraded, _ = await _alone_then_during(
        address, quiet_key, questions, ingest, finish=False
    )
    return (
        f"\nqueries while another tenant ingests two {MAXIMAL_DOCUMENT_CHARS:,}-character "
        f"documents:\n{_compared(alone, loaded, degraded, 'A ingests 1 MB documents')}"
    )


async def _alone_then_during(address, quiet_key, questions, load, *, finish=True):
    """B's first half of `questions` alone, then its second half while `load(documents stub)`
    runs; the load is awaited if `finish`, else cancelled. Returns both runs, B's degraded
    answers under load, and what the load returned (None when cancelled)."""
    quiet = [("authorization", f"Bearer {quiet_key}")]
    options = pb.QueryOptions(provider="extractive")
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.QueryServiceStub(channel)
        half = len(questions) // 2
        alone, _ = await _ask_each(stub, questions[:half], quiet, options)
        running = asyncio.ensure_future(load(doc_grpc.DocumentServiceStub(channel)))
        await asyncio.sleep(0.5)  # the load is under way before B asks
        loaded, degraded = await _ask_each(stub, questions[half:], quiet, options)
        if finish:
            return alone, loaded, degraded, await running
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        return alone, loaded, degraded, None


def _compared(alone: Run, loaded: Run, degraded: Counter[str], load: str) -> str:
    """B's percentiles alone and under `load`, against the target."""
    ratio = loaded.percentile(95) / alone.percentile(95)
    targets.record(f"tenant B p95 while {load}", ratio, TARGET_RATIO, at_most=True)
    verdict = "met" if ratio <= TARGET_RATIO and not degraded["no_context"] else "MISSED"
    stages = ", ".join(
        f"{stage} {alone.percentile(50, stage):.1f} -> {loaded.percentile(50, stage):.1f}"
        for stage in ("queued", "embed", "retrieve", "generate", "own")
    )
    return (
        f"  B p50 {alone.percentile(50):.1f} -> {loaded.percentile(50):.1f} ms, p95 "
        f"{alone.percentile(95):.1f} -> {loaded.percentile(95):.1f} ms ({ratio:.2f}x; target "
        f"<= {TARGET_RATIO}x with no no_context: {verdict}); B degraded under load: "
        f"{dict(degraded) or 'never'}\n  B's stage medians (ms): {stages}"
    )


async def _ask_each(stub, questions, metadata, options) -> tuple[Run, Counter[str]]:
    run, degraded = Run("tenant B", 1), Counter()
    started = time.perf_counter()
    for question in questions:
        began = time.perf_counter()
        while True:
            try:
                reply = await stub.Query(
                    pb.QueryRequest(question=question, options=options),
                    metadata=metadata,
                    timeout=30,
                )
                break
            except grpc.aio.AioRpcError as exc:
                # Refused with a delay to wait: B waits it and asks again, as a polite
                # client does; the wait is part of its answer's time.
                delay = retry_delay(exc)
                if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or delay is None:
                    raise
                info = error_info(exc)
                degraded[f"refused {info.reason if info else 'RESOURCE_EXHAUSTED'}"] += 1
                await asyncio.sleep(delay)
        run.add((time.perf_counter() - began) * 1000, **capacity.reply_stages(reply))
        degraded.update(reply.degraded)
    run.wall_s = time.perf_counter() - started
    return run, degraded


def _flood_process(address: str, stop, results, popular: bool) -> None:
    """Tenant A's FLOOD_CONCURRENCY callers, until `stop`; their outcomes go to `results`."""
    asyncio.run(_flood_all(address, stop, results, popular))


async def _flood_all(address: str, stop, results, popular: bool) -> None:
    options = pb.QueryOptions(provider="extractive")
    outcomes: Counter[str] = Counter()
    async with grpc.aio.insecure_channel(address) as channel:
        await channel.channel_ready()
        results.put(None)
        stub = pb_grpc.QueryServiceStub(channel)
        await asyncio.gather(
            *(_flood(stub, n, options, stop, outcomes, popular) for n in range(FLOOD_CONCURRENCY))
        )
    results.put(dict(outcomes))


async def _flood(stub, worker: int, options, stop, outcomes, popular: bool) -> None:
    number = 0
    while not stop.is_set():
        number += 1
        topic = "everyone's favourite" if popular else f"{worker}-{number}"
        question = f"What does the flood ask about runbook {topic}?"
        try:
            await stub.Query(
                pb.QueryRequest(question=question, options=options), metadata=FLOOD_AUTH, timeout=30
            )
            outcomes["answered"] += 1
        except grpc.aio.AioRpcError as exc:
            info = error_info(exc)
            outcomes[info.reason if info else exc.code().name] += 1
            # A refused client waits as long as the server's RetryInfo asks, as SDKs do.
            await asyncio.sleep(retry_delay(exc) or 0.05)


def _batches(items: list, size: int):
    for start in range(0, len(items), size):
        yield start, items[start : start + size]
