"""What a bulk encode costs work beside it, by the bulk encode's CPU priority.

Another process encodes ingest-sized chunks, 32 a call, without a pause, at each niceness in
turn (the ingest lane's `RAG_EMBEDDING_BULK_NICENESS`); meanwhile this process, at normal
priority, times a question's encode and a short piece of pure Python work (what the other
services do for a question), one after the other with a pause between, as tenant B's
questions come. Each is printed beside the same with nothing running beside it, before and
after. `python -m rag_bench.priority` (about two minutes on 2 CPUs).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time

from rag_bench import corpus

SAMPLES = 100
QUESTION = "How do I rotate the identity key?"


def _model():
    from rag_embedding.__main__ import model_loader
    from rag_embedding.config import EmbeddingSettings

    return model_loader(EmbeddingSettings())()


def _bulk_encode(niceness: int, ready, stop) -> None:
    """Encode 32 chunks over and over at `niceness` until `stop`."""
    from rag_embedding.embedder import Purpose

    os.setpriority(os.PRIO_PROCESS, 0, niceness)  # before the model's threads start
    model = _model()
    chunks = [text for _, text in corpus.documents(32, seed=5)]
    model.encode(chunks, Purpose.DOCUMENT)
    ready.set()
    while not stop.is_set():
        model.encode(chunks, Purpose.DOCUMENT)


def _python_work() -> int:
    """A few milliseconds of interpreter work, hot in the cache like a service's own code."""
    return sum(i * i % 7 for i in range(60_000))


def _timed(model) -> tuple[list[float], list[float]]:
    """Milliseconds of SAMPLES question encodes and as many pieces of Python work."""
    from rag_embedding.embedder import Purpose

    encodes, work = [], []
    for _ in range(SAMPLES):
        started = time.perf_counter()
        model.encode([QUESTION], Purpose.QUERY)
        encodes.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        _python_work()
        work.append((time.perf_counter() - started) * 1000)
        time.sleep(0.01)  # a question at a time, with room between
    return encodes, work


def _line(label: str, timed: tuple[list[float], list[float]]) -> str:
    cells = []
    for name, values in zip(("question encode", "python work"), timed, strict=True):
        p95 = statistics.quantiles(values, n=20)[-1]
        cells.append(f"{name} p50 {statistics.median(values):5.2f} p95 {p95:5.2f} ms")
    return f"  {label:<16}" + "   ".join(cells)


def run(nicenesses: list[int]) -> None:
    """Print the timings alone, beside a bulk encode at each niceness, and alone again."""
    model = _model()
    _timed(model)  # first runs are slower
    print(f"beside a bulk encode in another process, {SAMPLES} of each:")
    print(_line("alone", _timed(model)), flush=True)
    context = multiprocessing.get_context("spawn")
    for niceness in nicenesses:
        ready, stop = context.Event(), context.Event()
        bulk = context.Process(target=_bulk_encode, args=(niceness, ready, stop))
        bulk.start()
        ready.wait()
        print(_line(f"bulk at nice {niceness}", _timed(model)), flush=True)
        stop.set()
        bulk.join()
    print(_line("alone", _timed(model)))


def main() -> None:
    """`python -m rag_bench.priority`."""
    parser = argparse.ArgumentParser(prog="rag_bench.priority", description=__doc__)
    parser.add_argument(
        "--nice", default="0,10,19", help="the bulk encode's nicenesses, comma-separated"
    )
    run([int(n) for n in parser.parse_args().nice.split(",")])


if __name__ == "__main__":
    main()
