"""The embedding service's own Prometheus families: batches, queue, drops and cache."""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily, Metric

from rag_common.telemetry.metrics import counter_family, histogram_family
from rag_embedding.embedder import Embedder

_LAYERS = {"local_hit": ("local", "hit"), "remote_hit": ("redis", "hit"), "miss": ("all", "miss")}


def embedding_families(embedder: Embedder) -> list[Metric]:
    """Batch sizes, encode times, texts waiting for a batch, and embedding cache lookups, per lane
    (query, document), read at scrape."""
    lanes = {
        ("embedding", purpose.value): batcher for purpose, batcher in embedder.batchers.items()
    }
    queue = GaugeMetricFamily(
        "rag_embedding_queue_depth", "Texts waiting for a batch.", labels=["service", "lane"]
    )
    for labels, batcher in lanes.items():
        queue.add_metric(list(labels), batcher.queue_depth)
    families: list[Metric] = [
        histogram_family(
            "rag_embedding_batch_size",
            "Texts per call of the model.",
            ["service", "lane"],
            {labels: batcher.batch_sizes for labels, batcher in lanes.items()},
        ),
        histogram_family(
            "rag_embedding_encode_seconds",
            "Seconds each call of the model took on its thread.",
            ["service", "lane"],
            {labels: batcher.encode_seconds for labels, batcher in lanes.items()},
        ),
        queue,
        counter_family(
            "rag_embedding_dropped_texts",
            "Queued texts dropped unencoded because every caller had gone.",
            ["service", "lane"],
            {labels: batcher.dropped for labels, batcher in lanes.items()},
        ),
    ]
    if embedder.cache is not None:
        counts = dict(embedder.cache.counts)  # one C-level copy: safe off the event loop
        families.append(
            counter_family(
                "rag_cache_requests",
                "Cache lookups by layer and result.",
                ["service", "layer", "result"],
                {
                    ("embedding", f"embedding_{_LAYERS[key][0]}", _LAYERS[key][1]): count
                    for key, count in counts.items()
                },
            )
        )
    return families
