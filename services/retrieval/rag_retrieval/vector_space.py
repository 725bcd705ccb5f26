"""Which embedding model made the store's vectors, recorded in the store itself, so vectors of
two models never mix: a retrieval service whose embedding service now runs another model (or
another dimension) refuses to write into the store or search it with that model's vectors,
naming both, until the store is rebuilt or the model put back."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from rag_common.errors import FailedPrecondition, Unavailable
from rag_common.reasons import Reason
from rag_retrieval.models import ChunkRecord
from rag_retrieval.store import DOCUMENT, VectorStore

# A tenant no caller can have (tenant names are letters, digits and ._-): the record's own.
RECORD_TENANT = "\x00rag"
_RECORD_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "rag:vector-space"))


@dataclass(frozen=True)
class VectorSpace:
    """An embedding model and the dimension of its vectors."""

    model: str
    dimension: int

    def __str__(self) -> str:
        return f"{self.model} ({self.dimension} dimensions)"


class VectorSpaceGuard:
    """Holds the store's vector space and admits only vectors of that space."""

    def __init__(self, store: VectorStore, *, dimension: int) -> None:
        self._store = store
        self._dimension = dimension  # what the store's collection was made for
        self.recorded: VectorSpace | None = None
        self.rebuilding = False  # while `rag reindex` rewrites the vectors

    async def load(self) -> None:
        """Read the store's record (a store written before records has none yet)."""
        heads = await self._store.document_heads(RECORD_TENANT)
        stored = heads[0].get(DOCUMENT, {}) if heads else {}
        if stored:
            self.recorded = VectorSpace(stored["model"], int(stored["dimension"]))

    async def admit_write(self, space: VectorSpace) -> None:
        """Refuse vectors of another space; the first write records its space."""
        self.admit_search(space)
        if self.recorded is None:
            await self._store.upsert([_record(space)])
            self.recorded = space

    def check_open(self) -> None:
        """Refuse every search and write while the vectors are rebuilt (they are of two
        models until it ends)."""
        if self.rebuilding:
            raise Unavailable(
                "the store's vectors are being rebuilt with a new model; retry once it is done",
                reason=Reason.REINDEXING,
            )

    async def rerecord(self, space: VectorSpace) -> None:
        """The vectors are now all of `space` (after a rebuild)."""
        self._check_dimension(space)
        await self._store.upsert([_record(space)])
        self.recorded = space

    def admit_search(self, space: VectorSpace) -> None:
        """Refuse to search the store with vectors of another space."""
        self.check_open()
        if self.recorded is not None and space != self.recorded:
            raise _mismatch(str(self.recorded), space)
        self._check_dimension(space)

    def _check_dimension(self, space: VectorSpace) -> None:
        if space.dimension != self._dimension:
            made_by = f"a model of {self._dimension} dimensions (RAG_RETRIEVAL_VECTOR_SIZE)"
            raise _mismatch(made_by, space)


def _mismatch(made_by: str, space: VectorSpace) -> FailedPrecondition:
    return FailedPrecondition(
        f"the store's vectors were made by {made_by}, but the embedding service now "
        f"embeds with {space}: configure the store's model again, or rebuild the store's "
        "vectors with the new one (`rag reindex`)",
        reason=Reason.EMBEDDING_MODEL_MISMATCH,
        metadata={"store_model": made_by, "embedding_model": str(space)},
    )


def _record(space: VectorSpace) -> ChunkRecord:
    unit = [1.0] + [0.0] * (space.dimension - 1)
    return ChunkRecord(
        id=_RECORD_ID,
        tenant=RECORD_TENANT,
        document_id="vector-space",
        chunk_index=0,
        text="",
        vector=unit,
        chunk_count=1,
        document={"model": space.model, "dimension": space.dimension},
    )
