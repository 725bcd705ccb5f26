"""The embedding core: validates texts and encodes them with one model, off the event loop."""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

import numpy as np

from rag_common import context
from rag_common.cache.tiered import TieredCache
from rag_common.errors import InvalidArgument, Unavailable
from rag_common.reasons import Reason
from rag_common.telemetry import tracing
from rag_embedding.background import background_executor
from rag_embedding.batching import DynamicBatcher


class Purpose(Enum):
    """What a text will be used for."""

    QUERY = "query"
    DOCUMENT = "document"


class EncoderModel(Protocol):
    """A loaded sentence-embedding model (the port the adapter fills)."""

    name: str
    dimension: int
    max_sequence_length: int

    def encode(self, texts: Sequence[str], purpose: Purpose) -> list[list[float]]:
        """Return one L2-normalised vector per text; blocking."""
        ...


@dataclass(frozen=True)
class ModelInfo:
    """What callers need to know about the loaded model and the service's limits."""

    model: str
    dimension: int
    max_sequence_length: int
    max_texts: int
    max_text_chars: int


class Embedder:
    """Encodes validated texts, batching concurrent callers, in two lanes: questions and
    ingest.

    Each lane has its own copy of the model, its own batcher and its own worker thread, so
    a question never waits behind an ingest batch. The ingest lane's thread (and the threads
    its model computes with) run `bulk_niceness` below normal priority: alone, an ingest
    runs at full speed on every core; while questions are encoding, the scheduler gives
    them the cores first. Within a lane one batch encodes at a time: the model already uses
    every core for one batch, and the batcher keeps the batches full. Until `start()` has
    loaded the models, calls fail with UNAVAILABLE (reason NOT_READY).
    """

    def __init__(
        self,
        load_model: Callable[[], EncoderModel],
        *,
        max_texts: int,
        max_text_chars: int,
        max_batch: int = 64,
        max_document_batch: int = 32,
        max_wait_s: float = 0.010,
        quiet_s: float = 0.001,
        bulk_niceness: int = 19,
        cache: TieredCache | None = None,
    ) -> None:
        self._load_model = load_model
        self._models: dict[Purpose, EncoderModel] = {}
        self._max_texts = max_texts
        self._max_text_chars = max_text_chars
        self._executors = {
            Purpose.QUERY: ThreadPoolExecutor(max_workers=1, thread_name_prefix="encode"),
            Purpose.DOCUMENT: background_executor("encode-bulk", bulk_niceness),
        }
        self._batch_limits = {Purpose.QUERY: max_batch, Purpose.DOCUMENT: max_document_batch}
        self.cache = cache
        self.batchers = {
            purpose: DynamicBatcher(
                functools.partial(self._encode, purpose),
                self._executors[purpose],
                max_batch=self._batch_limits[purpose],
                max_wait_s=max_wait_s,
                quiet_s=quiet_s,
            )
            for purpose in Purpose
        }

    async def start(self) -> None:
        """Load each lane's model on its own thread (so the ingest lane's compute threads
        inherit its priority), then encode a full batch and a single text with each, so
        neither the first caller nor the first burst pays for the model's first runs."""
        loop = asyncio.get_running_loop()
        models = {}
        for purpose in Purpose:  # one after the other: the first load may export the model
            executor = self._executors[purpose]
            model = await loop.run_in_executor(executor, self._load_model)
            # Straight to the model: through the cache, a text warmed before would skip it.
            batch = [f"warm-up text number {n}" for n in range(self._batch_limits[purpose])]
            for texts in (batch, batch[:1]):
                await loop.run_in_executor(executor, model.encode, texts, purpose)
            models[purpose] = model
        self._models = models

    @property
    def ready(self) -> bool:
        """Whether the model is loaded."""
        return bool(self._models)

    @property
    def batches(self) -> int:
        """Model calls made so far, both lanes together."""
        return sum(batcher.batches for batcher in self.batchers.values())

    @property
    def info(self) -> ModelInfo:
        """The model and the limits of this service."""
        model = self._ready_model()
        return ModelInfo(
            model=model.name,
            dimension=model.dimension,
            max_sequence_length=model.max_sequence_length,
            max_texts=self._max_texts,
            max_text_chars=self._max_text_chars,
        )

    async def embed(self, texts: Sequence[str], purpose: Purpose | str) -> list[list[float]]:
        """Validate `texts`, then return their vectors in the same order.

        `purpose` may be given as its value ("query", "document"), which makes an Embedder
        usable wherever the TextEmbedder port is expected, without gRPC in between.
        """
        model = self._ready_model()
        self._validate(texts)
        purpose = Purpose(purpose)
        if self.cache is None:
            return await self.batchers[purpose].submit(texts)
        # The whole request is looked up in one round trip; only the misses are encoded.
        tenant = context.current_tenant()
        keys = [_cache_key(model.name, purpose, tenant, text) for text in texts]
        cached = await self.cache.get_many(keys)
        missing = [i for i, value in enumerate(cached) if value is None]
        tracing.annotate(texts=len(texts), cache_hits=len(texts) - len(missing))
        vectors: list[list[float] | None] = [
            None if value is None else np.frombuffer(value, dtype=np.float32).tolist()
            for value in cached
        ]
        if missing:
            computed = await self.batchers[purpose].submit([texts[i] for i in missing])
            for i, vector in zip(missing, computed, strict=True):
                vectors[i] = vector
            await self.cache.set_many(
                {
                    keys[i]: np.asarray(vector, dtype=np.float32).tobytes()
                    for i, vector in zip(missing, computed, strict=True)
                }
            )
        return vectors  # type: ignore[return-value]

    async def embed_tagged(
        self, texts: Sequence[str], purpose: Purpose | str
    ) -> tuple[list[list[float]], str]:
        """`embed`'s vectors and the id of the model that made them."""
        return await self.embed(texts, purpose), self.info.model

    def _encode(self, purpose: Purpose, texts: Sequence[str]) -> list[list[float]]:
        return self._models[purpose].encode(texts, purpose)

    def _ready_model(self) -> EncoderModel:
        if not self._models:
            raise Unavailable("the embedding model is still loading", reason=Reason.NOT_READY)
        return self._models[Purpose.QUERY]

    async def close(self) -> None:
        """Stop batching, then the encode threads once the batches in progress are done."""
        for batcher in self.batchers.values():
            await batcher.close()
        for executor in self._executors.values():
            executor.shutdown(wait=True)

    def _validate(self, texts: Sequence[str]) -> None:
        if not texts:
            raise InvalidArgument("texts", "at least one text is required")
        if len(texts) > self._max_texts:
            raise InvalidArgument(
                "texts", f"{len(texts)} texts given, at most {self._max_texts} allowed"
            )
        for i, text in enumerate(texts):
            if not text.strip():
                raise InvalidArgument(f"texts[{i}]", "must not be empty")
            if len(text) > self._max_text_chars:
                raise InvalidArgument(
                    f"texts[{i}]", f"{len(text)} characters, at most {self._max_text_chars}"
                )


def _cache_key(model: str, purpose: Purpose, tenant: str, text: str) -> str:
    """Model + purpose + tenant + text hash: a vector is only reused for exactly what
    produced it, and only within the tenant that asked. Shared across tenants, a hit's
    speed (returned in every answer's timings) would tell one tenant what another asked."""
    digest = hashlib.sha256(f"{tenant}\0{text}".encode()).hexdigest()[:32]
    return f"emb:{model}:{purpose.value}:{digest}"
