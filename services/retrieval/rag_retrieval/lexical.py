"""BM25 term weights for the lexical index beside the dense one, identical for both stores."""

from __future__ import annotations

from dataclasses import dataclass

import qdrant_edge as qe

LEXICAL_VECTOR = "bm25"  # the sparse vector's name in both stores
_CHARS_PER_TOKEN = 6  # English prose, spaces included: an 800-character chunk is ~130 tokens


@dataclass(frozen=True)
class SparseTerms:
    """A sparse vector: term ids and their weights, the same length."""

    indices: tuple[int, ...]
    values: tuple[float, ...]

    def __bool__(self) -> bool:
        return bool(self.indices)

    @classmethod
    def empty(cls) -> SparseTerms:
        """No terms: a text of stopwords only, or a chunk stored before hybrid search."""
        return cls((), ())


class Bm25Terms:
    """Qdrant's BM25 tokenizer and term-frequency weights (English stemming and stopwords).

    Documents get saturated, length-normalised term frequencies; queries weight each term 1.
    The store's IDF modifier supplies the inverse document frequency at search time, over
    whatever the collection holds, so nothing here depends on the corpus.
    """

    def __init__(self, chunk_size: int) -> None:
        config = qe.Bm25Config(avg_len=max(chunk_size / _CHARS_PER_TOKEN, 16.0), language="english")
        self._model = qe.Bm25(config)

    def document(self, text: str) -> SparseTerms:
        """Weights of a chunk's indexed text."""
        return _terms(self._model.embed_document(text))

    def query(self, text: str) -> SparseTerms:
        """Terms of a question; empty when it has only stopwords."""
        return _terms(self._model.embed_query(text))


def _terms(vector: qe.SparseVector) -> SparseTerms:
    return SparseTerms(tuple(vector.indices), tuple(vector.values))
