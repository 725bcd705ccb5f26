"""`make bench`: Query through the four gRPC services vs. the same pipeline in one process.

Ingests a synthetic corpus, then runs a bounded number of questions at concurrency 1 and 8
against QueryService (extractive provider, so the figures measure the pipeline, not an LLM),
then runs the same questions through the same QueryEngine with every stage in-process, on
the same stored vectors, and prints both side by side with their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc

from rag.v1 import common_pb2
from rag.v1 import document_service_pb2 as doc_pb
from rag.v1 import document_service_pb2_grpc as doc_grpc
from rag.v1 import query_service_pb2 as pb
from rag.v1 import query_service_pb2_grpc as pb_grpc
from rag_bench import (
    capacity,
    collector,
    corpus,
    cpu,
    embedding,
    fairness,
    hop,
    identity_cost,
    internal_calls,
    observability,
    report,
    routing,
    scale,
    targets,
)
from rag_bench.in_process import LocalGenerator, LocalRetriever
from rag_bench.stats import Run, table
from rag_cli.launcher import LocalCluster, client_channel, free_port
from rag_common.security.identity import Identity
from rag_query.engine import QueryEngine
from rag_query.models import Question

API_KEY = "bench-key"
TENANT = "bench"
AUTH = [("authorization", f"Bearer {API_KEY}")]
CONCURRENCIES = (1, 8)


async def drive(
    name: str, concurrency: int, questions: list[str], ask: Callable[[str], Awaitable[dict]]
) -> Run:
    """Send every question, `concurrency` at a time; record latencies."""
    run = Run(name, concurrency)
    pending = iter(questions)

    async def worker() -> None:
        for question in pending:
            started = time.perf_counter()
            stages = await ask(question)
            run.add((time.perf_counter() - started) * 1000, **stages)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    run.wall_s = time.perf_counter() - started
    return run


async def ingest(cluster: LocalCluster, chunks: int, jobs: int = 2) -> float:
    """Store the synthetic corpus through DocumentService, `jobs` calls of 100 documents in
    flight (as `rag ingest --jobs 2` does); returns seconds taken."""
    documents = corpus.documents(chunks)
    calls = [documents[start : start + 100] for start in range(0, len(documents), 100)]
    started = time.perf_counter()
    async with grpc.aio.insecure_channel(cluster.address("query")) as channel:
        stub = doc_grpc.DocumentServiceStub(channel)

        async def writer(lane: int) -> None:
            for batch in calls[lane::jobs]:
                request = doc_pb.IngestDocumentsRequest(
                    documents=[common_pb2.Document(id=i, text=t) for i, t in batch]
                )
                await stub.IngestDocuments(request, metadata=AUTH, timeout=300)

        await asyncio.gather(*(writer(lane) for lane in range(jobs)))
    return time.perf_counter() - started


def batches(questions: list[str], requests: int) -> dict[int, list[str]]:
    """Different questions for each concurrency, so none is answered from the cache."""
    return {c: questions[i * requests : (i + 1) * requests] for i, c in enumerate(CONCURRENCIES)}


async def grpc_runs(
    cluster: LocalCluster,
    questions: list[str],
    requests: int,
    label: str = "",
    misses_at_32: list[str] = (),
    model: capacity.Yardstick | None = None,
) -> list[Run]:
    """Query through the services, then the same questions again: answer cache hits; then
    `misses_at_32`, new questions, 32 at a time, with `model` measured right before and
    after them."""
    options = pb.QueryOptions(provider="extractive")
    async with client_channel(cluster.address("query"), cluster.client_tls()) as channel:
        stub = pb_grpc.QueryServiceStub(channel)

        async def ask(question: str) -> dict:
            reply = await stub.Query(
                pb.QueryRequest(question=question, options=options), metadata=AUTH, timeout=30
            )
            return capacity.reply_stages(reply)

        await drive("warm-up", 2, questions[-10:], ask)
        per_run = batches(questions, requests)
        runs = []
        for c in CONCURRENCIES:
            # Counted once, on the plain cluster: the turns of the others are too short.
            counting = (
                internal_calls.reported(cluster, f"c{c}", len(per_run[c]))
                if not label
                else contextlib.nullcontext()
            )
            with counting:
                runs.append(await drive(f"grpc (4 services){label}", c, per_run[c], ask))
        runs += [await drive(f"grpc, cache hit{label}", c, per_run[c], ask) for c in CONCURRENCIES]
        if misses_at_32:
            name = f"grpc (4 services){label}"
            pids = {service: p.pid for service, p in cluster.processes.items()}
            cpu_ms: dict[str, float] = {}
            at = f"c{capacity.CONCURRENCY}{label}"
            if model is not None:
                model.measure()
            with (
                internal_calls.reported(cluster, at, len(misses_at_32)),
                cpu.per_request(pids, len(misses_at_32), cpu_ms),
            ):
                runs.append(await drive(name, capacity.CONCURRENCY, misses_at_32, ask))
            runs[-1].cpu_ms = cpu_ms
            if model is not None:
                model.measure()
        return runs


async def echo_runs(requests: int, servers: dict[str, LocalCluster | None]) -> list[Run]:
    """The bare gRPC echo server with a cache hit's message sizes, one process per label in
    `servers`, taking turns: in plaintext, or with a cluster given over TLS and mTLS with
    its certificates."""
    reply_size = len(
        pb.QueryResponse(
            text="x" * 300,
            sources=[common_pb2.Source(document_id="doc-00000", text="y" * 300) for _ in range(5)],
        ).SerializeToString()
    )
    request = pb.QueryRequest(question="x" * 60).SerializeToString()
    ports = {label: free_port() for label in servers}
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "rag_bench.echo",
            str(ports[label]),
            str(reply_size),
            *([str(p) for p in cluster.tls_paths("query")] if cluster else []),
        )
        for label, cluster in servers.items()
    ]
    try:
        async with contextlib.AsyncExitStack() as stack:
            echoes = {}
            for label, cluster in servers.items():
                channel = await stack.enter_async_context(
                    client_channel(
                        f"127.0.0.1:{ports[label]}", cluster.client_tls() if cluster else None
                    )
                )
                await channel.channel_ready()
                echoes[label] = channel.unary_unary("/bench.Echo/Echo")

            def asker(echo):
                async def ask(_: str) -> dict:
                    await echo(request, metadata=AUTH, timeout=10)
                    return {"embed": 0.0, "retrieve": 0.0, "generate": 0.0}

                return ask

            askers = {label: asker(echo) for label, echo in echoes.items()}
            for ask in askers.values():
                await drive("warm-up", 2, ["q"] * 20, ask)
            share, taken = requests // observability.ROUNDS, []
            for round_ in range(observability.ROUNDS):
                for label in observability.in_turn(list(askers), round_):
                    for c in CONCURRENCIES:
                        name = observability.ECHO + label
                        taken.append(await drive(name, c, ["q"] * share, askers[label]))
            return observability.merged(taken)
    finally:
        for process in processes:
            process.terminate()
            await process.wait()


async def in_process_runs(data_dir: Path, questions: list[str], requests: int) -> list[Run]:
    """The same QueryEngine with the embedder, retriever and generator in this process."""
    from rag_embedding.__main__ import build_embedder
    from rag_embedding.config import EmbeddingSettings
    from rag_generation.__main__ import build_generator
    from rag_generation.config import GenerationSettings
    from rag_retrieval.__main__ import build_retriever
    from rag_retrieval.config import RetrievalSettings

    embedder = build_embedder(EmbeddingSettings())
    await embedder.start()
    retriever = build_retriever(RetrievalSettings(data_dir=data_dir), embedder)
    await retriever.start()
    generator = build_generator(GenerationSettings(providers=["extractive"]))
    await generator.start()
    engine = QueryEngine(embedder, LocalRetriever(retriever), LocalGenerator(generator))
    identity = Identity("bench", TENANT, frozenset({"reader"}))

    async def ask(question: str) -> dict:
        answer = await engine.answer(Question(question), identity)
        t = answer.timings
        return {"embed": t.embed_ms, "retrieve": t.retrieve_ms, "generate": t.generate_ms}

    try:
        await drive("warm-up", 2, questions[-10:], ask)
        per_run = batches(questions, requests)
        return [await drive("in-process", c, per_run[c], ask) for c in CONCURRENCIES]
    finally:
        await retriever.close()
        await embedder.close()


async def generation_scenarios(requests: int) -> None:
    """Local time to first token, and what a dead provider costs once its breaker is open."""
    ttft = await routing.local_first_token(min(requests, 30))
    long_prompts = [
        await routing.local_first_token(min(requests, 12), weights, long=True)
        for weights in ("", "q8_0")
    ]
    dead = await routing.dead_provider_overhead(requests)
    print()
    print(
        f"local provider (llama.cpp, SmolLM2-135M), {len(ttft.total_ms)} streamed answers: "
        f"time to first token p50 {ttft.percentile(50):.0f} ms, p95 "
        f"{ttft.percentile(95):.0f} ms; whole answer p50 {ttft.percentile(50, 'generate'):.0f} ms"
    )
    packaged, requantized = long_prompts
    print(
        f"  over five 800-character passages of docs/configuration.md, {len(packaged.total_ms)} "
        "answers each: time to first token p50 / p95, as packaged (Q4_1) "
        f"{packaged.percentile(50):.0f} / {packaged.percentile(95):.0f} ms, re-encoded (Q8_0) "
        f"{requantized.percentile(50):.0f} / {requantized.percentile(95):.0f} ms: "
        f"{packaged.percentile(50) / requantized.percentile(50):.2f}x faster"
    )
    baseline, with_dead = dead
    print(f"\ngeneration through the router, {requests} requests each (fake OpenAI server):")
    print(table(dead))
    print(
        f"one provider hard down: p50 {with_dead.percentile(50) - baseline.percentile(50):+.2f} "
        f"ms, p99 {with_dead.percentile(99) - baseline.percentile(99):+.2f} ms, worst request "
        f"{max(with_dead.total_ms):.0f} ms (while its breaker was still closed)"
    )


async def semantic_cache_rates() -> None:
    """The semantic cache on the hand-labelled pairs' test half, threshold by threshold."""
    from rag_bench.semantic import load_pairs, rates
    from rag_embedding.__main__ import build_embedder
    from rag_embedding.config import EmbeddingSettings
    from rag_query.config import QuerySettings

    embedder = build_embedder(EmbeddingSettings())
    await embedder.start()
    try:
        pairs = load_pairs("test")
        table = await rates(embedder, pairs)
    finally:
        await embedder.close()
    reversals = sum(p.kind == "reversal" for p in pairs)
    print(
        f"\nsemantic cache on the test half of the labelled pairs ({len(pairs)} pairs, "
        f"{reversals} role reversals; 95 % Wilson intervals; default threshold "
        f"{QuerySettings().semantic_cache_threshold}); target: no false hit, 60 % of "
        "paraphrases hit"
    )
    for row in table:
        print(row.line())
    [default] = [r for r in table if r.threshold == QuerySettings().semantic_cache_threshold]
    paraphrase_rate = default.paraphrase_hits / default.paraphrases
    verdict = "met" if default.false_hits == 0 and paraphrase_rate >= 0.6 else "MISSED"
    print(
        f"  at the default threshold: {paraphrase_rate:.0%} of paraphrases hit, "
        f"{default.false_hits} false hits (target: 0 and 60 %: {verdict})"
    )


async def main(chunks: int, requests: int, scale_chunks: int) -> list[Run]:
    """Run every scenario and print the table."""
    per_scenario = requests * len(CONCURRENCIES)
    # A share each for the plain, traced, TLS and fairness runs: never a repeat.
    at_32 = 10 * capacity.CONCURRENCY
    # Tenant B asks 100 questions alone and 100 under each load: a p95 of 30 moves by a
    # third from one run to the next.
    fair_share = 2 * fairness.QUESTIONS_PER_RUN
    questions = corpus.questions(3 * per_scenario + at_32 + 10 + 4 * fair_share)
    plain = questions[: per_scenario + 10]
    capacity_questions = questions[3 * per_scenario + 10 : 3 * per_scenario + 10 + at_32]
    # Side by side, each cluster asks the same questions (each its own caches), a share a
    # round: new ones at c1 and c8, the warm-up's ten, then the first ones again (hits).
    share = requests // observability.ROUNDS
    side_questions = questions[: observability.ROUNDS * (len(CONCURRENCIES) * share + 10)]
    popular_questions = questions[-4 * fair_share : -3 * fair_share]
    fair_questions = questions[-3 * fair_share : -2 * fair_share]
    ingest_questions = questions[-2 * fair_share : -fair_share]
    maximal_questions = questions[-fair_share:]
    env = {
        "RAG_QUERY_API_KEYS": json.dumps(
            {
                API_KEY: {"tenant": TENANT, "roles": ["writer"]},
                fairness.FLOOD_KEY: {"tenant": fairness.FLOOD_TENANT, "roles": ["writer"]},
            }
        ),
        "RAG_GENERATION_PROVIDERS": '["extractive"]',
        **{
            f"RAG_{s.upper()}_LOG_LEVEL": "WARNING"
            for s in ("query", "retrieval", "generation", "embedding")
        },
    }
    with tempfile.TemporaryDirectory(prefix="rag-bench-") as tmp:
        data_dir = Path(tmp)
        cluster = LocalCluster.on_free_ports(data_dir, env=env)
        cluster.start()
        try:
            await cluster.wait_serving()
            ingest_s = await ingest(cluster, chunks)
            chunks_per_s = chunks / ingest_s
            print(f"ingested {chunks} chunks in {ingest_s:.1f}s ({chunks_per_s:.0f} chunks/s)")
            model_32 = capacity.Yardstick(capacity_questions[: 8 * capacity.CONCURRENCY])
            runs = await grpc_runs(
                cluster, plain, requests, misses_at_32=capacity_questions, model=model_32
            )
            runs += await echo_runs(requests, {"": None})  # beside the cluster, as its hits were
            runs.append(await hop.plumbing_run(requests, drive))
            fair = await fairness.runs(cluster.address("query"), API_KEY, fair_questions, 500)
            fair += await fairness.runs(
                cluster.address("query"), API_KEY, popular_questions, 0, popular=True
            )
            fair += await fairness.during_ingest(
                cluster.address("query"), API_KEY, ingest_questions, 600
            )
            fair += await fairness.during_maximal_ingest(
                cluster.address("query"), API_KEY, maximal_questions
            )
            encode_32 = capacity.Yardstick(embedding.texts())
            encode_32.measure()
            service_rate = await embedding.service_texts_per_s(
                cluster.address("embedding"), cluster.credentials("bench")
            )
            encode_32.measure()
        finally:
            cluster.stop()
        # The same stored corpus, served again by three clusters side by side: plain, with
        # spans sent to a collector and every /metrics endpoint scraped, and with TLS, as
        # the chart deploys them: what observability and TLS cost.
        collector_port, span_count = free_port(), data_dir / "spans"
        traced_env = env | observability.tracing_env(collector_port)
        secured = LocalCluster.on_free_ports(
            observability.copy_of(data_dir, Path(tmp + "-tls")), env=env
        )
        secured.use_tls()
        clusters = {
            observability.PLAIN_LABEL: LocalCluster.on_free_ports(
                observability.copy_of(data_dir, Path(tmp + "-plain")), env=env
            ),
            observability.LABEL: LocalCluster.on_free_ports(
                observability.copy_of(data_dir, Path(tmp + "-traced")), env=traced_env
            ),
            observability.TLS_LABEL: secured,
        }

        def turn(cluster: LocalCluster, label: str, round_: int) -> Awaitable[list[Run]]:
            size = len(side_questions) // observability.ROUNDS
            mine = side_questions[round_ * size : (round_ + 1) * size]
            return grpc_runs(cluster, mine, share, label)

        try:
            with collector.running(collector_port, span_count):
                runs += await observability.side_by_side(clusters, turn)
            spans_received = int(span_count.read_text())
            plain_and_tls = {observability.PLAIN_LABEL: None, observability.TLS_LABEL: secured}
            runs += await echo_runs(requests, plain_and_tls)
        finally:
            for cluster in clusters.values():
                shutil.rmtree(cluster.data_dir, ignore_errors=True)
        runs += await in_process_runs(data_dir, plain, requests)
    print()
    print(table(runs))
    print()
    for concurrency in CONCURRENCIES:
        over_grpc, local = (
            r
            for r in runs
            if r.concurrency == concurrency and r.name in ("grpc (4 services)", "in-process")
        )
        if concurrency == 1:
            ratio = over_grpc.percentile(50) / local.percentile(50)
            targets.record("gRPC / in-process p50, c1", ratio, 1.3, at_most=True)
        print(
            f"concurrency {concurrency}: gRPC/in-process p50 latency "
            f"{over_grpc.percentile(50) / local.percentile(50):.2f}x, "
            f"throughput {over_grpc.rps / local.rps:.2f}x"
        )
        if concurrency == 1:
            # What four processes cannot go below: a miss makes four round trips (the
            # caller's, and query's three), each at least the bare echo server's.
            [echo_1] = [r for r in runs if r.name == observability.ECHO and r.concurrency == 1]
            [plumbing] = [r for r in runs if r.name == hop.NAME]
            floor = local.percentile(50) + 4 * echo_1.percentile(50)
            print(
                f"  the floor at c1: {floor / local.percentile(50):.2f}x (in-process p50 plus "
                f"four echo round trips, {floor:.2f} ms)"
            )
            with_plumbing = local.percentile(50) + 4 * plumbing.percentile(50)
            print(
                f"  with the suite's plumbing on each hop ({plumbing.percentile(50):.2f} ms a "
                f"round trip against the echo's {echo_1.percentile(50):.2f}): "
                f"{with_plumbing / local.percentile(50):.2f}x"
            )
            gaps = ", ".join(
                f"{stage} {over_grpc.percentile(50, stage) - local.percentile(50, stage):+.2f}"
                for stage in ("embed", "retrieve", "generate")
            )
            print(f"  gRPC minus in-process by stage, p50 ms: {gaps}")
    local_rate = encode_32.rate
    targets.record(
        f"{embedding.CALLERS} single-text Embed callers / in-process encode of {embedding.CALLERS}",
        service_rate / local_rate,
        0.85,
        at_most=False,
    )
    print(
        f"\nembedding, {embedding.CALLERS} concurrent single-text callers over gRPC: "
        f"{service_rate:.0f} texts/s; one in-process encode of {embedding.CALLERS}: "
        f"{local_rate:.0f} texts/s; ratio {service_rate / local_rate:.2f}x"
    )
    hit = {r.concurrency: r for r in runs if r.name == "grpc, cache hit"}
    echo = {r.concurrency: r for r in runs if r.name == "grpc echo (yardstick)"}
    # Unchanged or better than before the hop-tax work: 1.20 ms and 0.52x on the 2-core VM.
    targets.record("cache-hit p50, c1", hit[1].percentile(50), 1.2, at_most=True, unit=" ms")
    targets.record(
        "cache-hit throughput c8 / echo server", hit[8].rps / echo[8].rps, 0.52, at_most=False
    )
    print(
        f"cache hit at concurrency 1: p50 {hit[1].percentile(50):.2f} ms, p99 "
        f"{hit[1].percentile(99):.2f} ms; at concurrency 8: {hit[8].rps:.0f} req/s = "
        f"{hit[8].rps / echo[8].rps:.2f}x the echo server's {echo[8].rps:.0f}"
    )
    [misses_32] = [r for r in runs if r.concurrency == capacity.CONCURRENCY]
    chunks = [text for _, text in corpus.documents(3 * capacity.CONCURRENCY, seed=5)]
    print(capacity.summary(misses_32, model_32, capacity_questions, chunks, chunks_per_s))
    at_32 = internal_calls.PER_QUESTION[f"c{capacity.CONCURRENCY}"]
    targets.record(
        f"internal RPCs per question, c{capacity.CONCURRENCY}", at_32, 1.5, at_most=True, unit=""
    )
    print(observability.summary(runs))
    print(f"  spans the collector received: {spans_received}")
    print(
        observability.summary(
            runs, observability.TLS_LABEL, "TLS on every port and mTLS between services, vs. off"
        )
    )
    plain_c1 = {r.name: r for r in runs if r.concurrency == 1}
    print(identity_cost.summary(plain_c1["grpc (4 services)"], plain_c1["grpc, cache hit"]))
    print(fair)
    await semantic_cache_rates()
    if scale_chunks:
        with tempfile.TemporaryDirectory(prefix="rag-bench-scale-") as tmp:
            print(await scale.scenario(Path(tmp), scale_chunks))
    await generation_scenarios(requests)
    print(targets.table())
    return runs


def cli() -> None:
    """Parse options and run."""
    logging.basicConfig(level=logging.ERROR)  # breaker warnings are expected here
    parser = argparse.ArgumentParser(prog="rag_bench", description=__doc__)
    parser.add_argument("--chunks", type=int, default=3000, help="synthetic chunks to ingest")
    parser.add_argument("--requests", type=int, default=200, help="queries per scenario")
    parser.add_argument(
        "--scale-chunks", type=int, default=100_000, help="chunks of the scale scenario (0: skip)"
    )
    args = parser.parse_args()
    printed = io.StringIO()
    with contextlib.redirect_stdout(_Tee(sys.stdout, printed)):
        runs = asyncio.run(main(args.chunks, args.requests, args.scale_chunks))
    for path in report.write(runs, printed.getvalue()):
        print(f"written {path}")


class _Tee(io.TextIOBase):
    """Writes to every stream it was given: the terminal and the report."""

    def __init__(self, *streams) -> None:
        self._streams = streams

    def write(self, text: str) -> int:
        for stream in self._streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self._streams:
            stream.flush()


if __name__ == "__main__":
    cli()
