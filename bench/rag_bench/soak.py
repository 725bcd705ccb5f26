"""`python -m rag_bench.soak --minutes 60`: a long run of new questions; does memory level off?

Starts the four services on free ports with a Redis of their own, configured as docs/operations.md
says (`maxmemory` and `volatile-lru`), ingests a small corpus and keeps 8 clients asking
questions never asked before (every one writes an answer, a semantic entry and an embedding
to Redis) for the given minutes. Every `--every` seconds it prints each process's resident
memory and Redis's used memory, then whether each levelled off: its growth over the last
third of the run against the first third. Not part of `make test`: it takes the time it
is given.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import tempfile
import time
from pathlib import Path

import grpc

from rag.v1 import common_pb2
from rag.v1 import document_service_pb2 as doc_pb
from rag.v1 import document_service_pb2_grpc as doc_grpc
from rag.v1 import query_service_pb2 as pb
from rag.v1 import query_service_pb2_grpc as pb_grpc
from rag_cli.launcher import LocalCluster
from rag_common.shared_redis import redis_client
from tests.support.redis_servers import RedisServer

KEY = "soak-key"
AUTH = [("authorization", f"Bearer {KEY}")]
CLIENTS = 8
REDIS_MAXMEMORY = "64mb"  # small, so that a run of minutes reaches it
_TOPICS = ["tides", "kelp", "lighthouses", "glaciers", "volcanoes", "coral", "dunes", "fjords"]


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return 0.0


async def ask_forever(stub, numbers, stop: asyncio.Event, answered: list[int]) -> None:
    """Ask new questions until `stop`; count the answers."""
    while not stop.is_set():
        n = next(numbers)
        question = f"What is special about {_TOPICS[n % len(_TOPICS)]}, case {n}?"
        request = pb.QueryRequest(question=question, options=pb.QueryOptions(provider="extractive"))
        try:
            await stub.Query(request, metadata=AUTH, timeout=10)
            answered[0] += 1
        except grpc.aio.AioRpcError:
            answered[1] += 1


async def soak(minutes: float, every_s: float, folder: Path) -> None:
    """Run the soak and print the curve."""
    redis = RedisServer(folder).start()
    redis_cli = redis_client(redis.url, timeout_s=5.0)
    await redis_cli.config_set("maxmemory", REDIS_MAXMEMORY)
    await redis_cli.config_set("maxmemory-policy", "volatile-lru")
    cluster = LocalCluster.on_free_ports(
        folder,
        env={
            "RAG_QUERY_API_KEYS": json.dumps({KEY: {"tenant": "soak", "roles": ["writer"]}}),
            "RAG_QUERY_REDIS_URL": redis.url,
            "RAG_EMBEDDING_REDIS_URL": redis.url,
            "RAG_GENERATION_PROVIDERS": json.dumps(["extractive"]),
        },
    )
    cluster.start()
    samples: list[dict[str, float]] = []
    try:
        await cluster.wait_serving(within_s=240)
        async with grpc.aio.insecure_channel(cluster.address("query")) as channel:
            await doc_grpc.DocumentServiceStub(channel).IngestDocuments(
                doc_pb.IngestDocumentsRequest(
                    documents=[
                        common_pb2.Document(id=t, text=f"Notes on {t}: {t} are remarkable.")
                        for t in _TOPICS
                    ]
                ),
                metadata=AUTH,
                timeout=60,
            )
            stop, answered, numbers = asyncio.Event(), [0, 0], itertools.count()
            stub = pb_grpc.QueryServiceStub(channel)
            clients = [
                asyncio.ensure_future(ask_forever(stub, numbers, stop, answered))
                for _ in range(CLIENTS)
            ]
            started = time.monotonic()
            names = [*cluster.processes, "redis"]
            print(f"{'min':>5} {'answers':>8} " + " ".join(f"{n:>10}" for n in names))
            while time.monotonic() - started < minutes * 60:
                await asyncio.sleep(every_s)
                info = await redis_cli.info("memory")
                sample = {n: rss_mb(p.pid) for n, p in cluster.processes.items()}
                sample["redis"] = info["used_memory"] / 1024**2
                samples.append(sample)
                elapsed = (time.monotonic() - started) / 60
                print(
                    f"{elapsed:5.1f} {answered[0]:8d} "
                    + " ".join(f"{v:8.0f}MB" for v in sample.values()),
                    flush=True,
                )
            stop.set()
            await asyncio.gather(*clients)
    finally:
        cluster.stop()
        await redis_cli.aclose()
        redis.stop()
    print(f"\n{answered[0]} answers, {answered[1]} failed calls")
    third = max(1, len(samples) // 3)
    for name in samples[0]:
        first = samples[third - 1][name] - samples[0][name]
        last = samples[-1][name] - samples[-third][name]
        verdict = "levelled off" if last <= max(first / 2, 5.0) else "still growing"
        print(f"{name:>12}: +{first:.0f} MB in the first third, +{last:.0f} in the last: {verdict}")


def main() -> None:
    """Parse the arguments and soak."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--every", type=float, default=60.0, help="seconds between samples")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rag-soak-") as folder:
        asyncio.run(soak(args.minutes, args.every, Path(folder)))


if __name__ == "__main__":
    main()
