"""Domain types more than one service works with: source chunks and metadata filters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal, Protocol


class Operator(Enum):
    """How a filter condition compares a metadata value."""

    EQUALS = "eq"
    NOT_EQUALS = "ne"
    IN = "in"
    NOT_IN = "not_in"


@dataclass(frozen=True)
class Condition:
    """One condition on document metadata; every condition of a request must hold."""

    key: str
    operator: Operator
    values: tuple[str, ...]


@dataclass(frozen=True)
class ScoredChunk:
    """A chunk found for a question: retrieval's hit, generation's numbered source."""

    document_id: str
    chunk_index: int
    score: float
    text: str
    title: str = ""
    source: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    page: int = 0  # the page the chunk starts on, from 1; 0 for a document without pages
    section: str = ""  # the innermost heading the chunk sits under


@dataclass(frozen=True)
class DocumentInput:
    """A document as a caller hands it over: its text, or its file's bytes (`content`, of
    `media_type` or a type read from them) that the query service converts to text."""

    id: str
    text: str
    title: str = ""
    source: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    content: bytes = b""
    media_type: str = ""


@dataclass(frozen=True)
class DocumentInfo:
    """What is stored of one document, beside its chunks."""

    document_id: str
    title: str = ""
    source: str = ""
    media_type: str = ""
    chars: int = 0
    chunks: int = 0
    pages: int = 0
    content_sha256: str = ""
    ingested_at: float = 0.0  # Unix time
    ingested_by: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DocumentListing:
    """Which of a tenant's documents to list, and from where."""

    page_size: int = 0
    page_token: str = ""
    conditions: Sequence[Condition] = ()


@dataclass(frozen=True)
class DocumentPage:
    """One page of a tenant's documents, newest first, and where the next one starts."""

    documents: list[DocumentInfo]
    next_page_token: str = ""


@dataclass(frozen=True)
class UpsertResult:
    """How many chunks a stored document now has, and for one given as a file, what its
    conversion found."""

    document_id: str
    chunks: int
    media_type: str = ""
    pages: int = 0
    pages_without_text: tuple[int, ...] = ()


class TextEmbedder(Protocol):
    """Turns texts into vectors: EmbeddingService over gRPC, or an embedder in-process."""

    async def embed(
        self, texts: Sequence[str], purpose: Literal["query", "document"]
    ) -> list[list[float]]:
        """One vector per text, in order."""
        ...

    async def embed_tagged(
        self, texts: Sequence[str], purpose: Literal["query", "document"]
    ) -> tuple[list[list[float]], str]:
        """`embed`'s vectors and the id of the model that made them."""
        ...
