"""`rag eval`: retrieval and answer quality of a labelled question set, through the public API.

Questions are JSONL lines {"id", "question", "relevant": [document ids], "split"?, "page"?};
documents, when given, are JSONL {"id", "text", "title"?, "source"?} or a folder of files (PDF,
HTML, DOCX, text: each file's id is its path inside the folder), ingested first. Rankings are
over documents: a document counts at the rank of its first chunk among an answer's sources. A
question with a "page" also scores whether the answer cites that page of the document.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc

from rag.v1 import common_pb2, document_service_pb2, document_service_pb2_grpc
from rag.v1 import query_service_pb2 as pb
from rag.v1 import query_service_pb2_grpc as pb_grpc
from rag_cli import files

CUTOFFS = (1, 5, 10)
INGEST_BATCH = 8  # documents per IngestDocuments call: man pages run to 50 KB each


class BadInput(ValueError):
    """A question or document file that cannot be read; the message names the line."""


@dataclass(frozen=True)
class LabelledQuestion:
    """A question and the documents that answer it."""

    id: str
    question: str
    relevant: frozenset[str]
    split: str = ""
    page: int = 0  # the page that answers it, where the document has pages


@dataclass(frozen=True)
class Variant:
    """One way of retrieving, as query options."""

    name: str
    search_mode: int = common_pb2.SEARCH_MODE_UNSPECIFIED
    rerank: bool | None = None


DEFAULT = Variant("default")
COMPARED = (
    Variant("dense", common_pb2.SEARCH_MODE_DENSE, rerank=False),
    Variant("hybrid", common_pb2.SEARCH_MODE_HYBRID, rerank=False),
    Variant("hybrid+rerank", common_pb2.SEARCH_MODE_HYBRID, rerank=True),
)


@dataclass
class Outcome:
    """What one variant scored over the question set."""

    variant: str
    questions: int = 0
    recall: dict[int, float] = field(default_factory=dict)  # cutoff -> mean recall@k
    mrr_at_10: float = 0.0
    ndcg_at_10: float = 0.0
    cites_relevant: float = 0.0  # share of answers citing a relevant source
    paged: int = 0  # questions labelled with a page
    cites_page: float = 0.0  # of those, share whose answer cites the right page first
    latency_ms: dict[str, float] = field(default_factory=dict)  # p50, p95, p99
    degraded: dict[str, int] = field(default_factory=dict)  # reason -> answers
    cached: int = 0  # answers a cache served
    misses: list[str] = field(default_factory=list)  # ids with no relevant document in 10


def read_jsonl(path: Path, required: Sequence[str]) -> list[dict]:
    """The objects of a JSONL file; a bad line raises BadInput naming its number."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadInput(f"{path}:{number}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict) or any(key not in row for key in required):
            raise BadInput(f"{path}:{number}: needs {', '.join(required)}")
        if "relevant" in required and not (isinstance(row["relevant"], list) and row["relevant"]):
            raise BadInput(f"{path}:{number}: relevant must be a non-empty list of ids")
        rows.append(row)
    return rows


def load_questions(path: Path, split: str = "") -> list[LabelledQuestion]:
    """The labelled questions, only those of `split` when one is named."""
    questions = [
        LabelledQuestion(
            str(row["id"]),
            row["question"],
            frozenset(row["relevant"]),
            row.get("split", ""),
            int(row.get("page", 0)),
        )
        for row in read_jsonl(path, ("id", "question", "relevant"))
    ]
    return [q for q in questions if not split or q.split == split]


def ranked_documents(sources: Sequence[common_pb2.Source]) -> list[str]:
    """Document ids in order of their first chunk."""
    return list(dict.fromkeys(s.document_id for s in sources))


def recall_at(ranking: Sequence[str], relevant: frozenset[str], k: int) -> float:
    """Share of the relevant documents in the first k."""
    return len(relevant.intersection(ranking[:k])) / len(relevant)


def reciprocal_rank(ranking: Sequence[str], relevant: frozenset[str], k: int = 10) -> float:
    """1 / rank of the first relevant document in the first k, else 0."""
    for rank, document in enumerate(ranking[:k], start=1):
        if document in relevant:
            return 1.0 / rank
    return 0.0


def ndcg_at(ranking: Sequence[str], relevant: frozenset[str], k: int = 10) -> float:
    """Normalised discounted cumulative gain with binary relevance."""
    gain = sum(1 / math.log2(r + 1) for r, d in enumerate(ranking[:k], 1) if d in relevant)
    ideal = sum(1 / math.log2(r + 1) for r in range(1, min(len(relevant), k) + 1))
    return gain / ideal


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (share in 0..1)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def cites_page(reply: pb.QueryResponse, labelled: LabelledQuestion) -> bool:
    """Whether the first source the answer cites from a relevant document is the page that
    answers the question."""
    for number in reply.cited_sources:
        source = reply.sources[number - 1]
        if source.document_id in labelled.relevant:
            return source.page == labelled.page
    return False


def read_documents(path: Path) -> list[common_pb2.Document]:
    """The documents to ingest: the rows of a JSONL file, or every supported file in a folder,
    each with its path inside the folder as id."""
    if path.is_dir():
        return [
            files.to_document(found, as_id=found.relative_to(path).as_posix())
            for found in files.find_files([path])
        ]
    return [
        common_pb2.Document(
            id=row["id"], text=row["text"], title=row.get("title", ""), source=row.get("source", "")
        )
        for row in read_jsonl(path, ("id", "text"))
    ]


async def ingest(channel: grpc.aio.Channel, path: Path, metadata, timeout_s: float) -> int:
    """Ingest a JSONL of documents or a folder of files; returns the chunks stored."""
    documents = read_documents(path)
    stub = document_service_pb2_grpc.DocumentServiceStub(channel)
    chunks = 0
    for start in range(0, len(documents), INGEST_BATCH):
        request = document_service_pb2.IngestDocumentsRequest(
            documents=documents[start : start + INGEST_BATCH]
        )
        reply = await stub.IngestDocuments(request, metadata=metadata, timeout=timeout_s)
        chunks += sum(d.chunks for d in reply.documents)
    return chunks


class _Tally:
    """Running sums for one variant."""

    def __init__(self, name: str) -> None:
        self.outcome = Outcome(name)
        self.recall = dict.fromkeys(CUTOFFS, 0.0)
        self.latencies: list[float] = []
        self.mrr = self.ndcg = 0.0
        self.cites = self.right_pages = 0

    def add(self, labelled: LabelledQuestion, reply: pb.QueryResponse, latency_ms: float) -> None:
        ranking = ranked_documents(reply.sources)
        for k in CUTOFFS:
            self.recall[k] += recall_at(ranking, labelled.relevant, k)
        rank_score = reciprocal_rank(ranking, labelled.relevant)
        self.mrr += rank_score
        self.ndcg += ndcg_at(ranking, labelled.relevant)
        cited = {reply.sources[n - 1].document_id for n in reply.cited_sources}
        self.cites += bool(cited & labelled.relevant)
        if labelled.page:
            self.outcome.paged += 1
            self.right_pages += cites_page(reply, labelled)
        self.latencies.append(latency_ms)
        outcome = self.outcome
        outcome.questions += 1
        for reason in reply.degraded:
            outcome.degraded[reason] = outcome.degraded.get(reason, 0) + 1
        outcome.cached += bool(reply.cache)
        if rank_score == 0.0:
            outcome.misses.append(labelled.id)

    def result(self) -> Outcome:
        outcome, count = self.outcome, self.outcome.questions or 1
        outcome.recall = {k: total / count for k, total in self.recall.items()}
        outcome.mrr_at_10 = self.mrr / count
        outcome.ndcg_at_10 = self.ndcg / count
        outcome.cites_relevant = self.cites / count
        outcome.cites_page = self.right_pages / (outcome.paged or 1)
        if self.latencies:
            outcome.latency_ms = {
                name: percentile(self.latencies, share)
                for name, share in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
            }
        return outcome


async def evaluate(
    channel: grpc.aio.Channel,
    questions: Sequence[LabelledQuestion],
    variants: Sequence[Variant],
    metadata,
    *,
    timeout_s: float,
    provider: str = "",
) -> list[Outcome]:
    """Ask every question once per variant, one call at a time, and score the sources.

    Each question goes to the variants in a rotating order, so none always pays for the
    first embedding of a question (the others find it in the embedding cache).
    """
    stub = pb_grpc.QueryServiceStub(channel)
    tallies = [_Tally(v.name) for v in variants]
    for number, labelled in enumerate(questions):
        for turn in range(len(variants)):
            at = (number + turn) % len(variants)
            variant = variants[at]
            options = pb.QueryOptions(top_k=10, search_mode=variant.search_mode, provider=provider)
            if variant.rerank is not None:
                options.rerank = variant.rerank
            started = time.perf_counter()
            reply = await stub.Query(
                pb.QueryRequest(question=labelled.question, options=options),
                metadata=metadata,
                timeout=timeout_s,
            )
            tallies[at].add(labelled, reply, (time.perf_counter() - started) * 1000)
    return [t.result() for t in tallies]


def to_json(outcomes: Sequence[Outcome]) -> str:
    """The outcomes as a JSON document."""
    return json.dumps([asdict(o) for o in outcomes], indent=2)
