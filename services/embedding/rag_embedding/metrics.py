"""The embedding service's own Prometheus families: batches, queue, drops and cache."""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily, Metric

from rag_common.metrics import counter_family, histogram_family
from rag_embedding.embedder import Embedder

_LAYERS = {"local_hit": ("local", "hit"), "remote_hit": ("redis", "hit"), "miss": ("all", "miss")}


def embedding_families(embedder: Embedder) -> list[Metric]:
    """Batch sizes, texts waiting for a batch, and embedding cache lookups, read at scrape."""
    service = ("embedding",)
    queue = GaugeMetricFamily(
        "rag_embedding_queue_depth", "Texts waiting for a batch.", labels=["service"]
    )
    queue.add_metric(list(service), embedder.batcher.queue_depth)
    families: list[Metric] = [
        histogram_family(
            "rag_embedding_batch_size",
            "Texts per call of the model.",
            ["service"],
            {service: embedder.batcher.batch_sizes},
        ),
        queue,
        counter_family(
            "rag_embedding_dropped_texts",
            "Queued texts dropped unencoded because every caller had gone.",
            ["service"],
            {service: embedder.batcher.dropped},
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
                    (*service, f"embedding_{_LAYERS[key][0]}", _LAYERS[key][1]): count
                    for key, count in counts.items()
                },
            )
        )
    return families
