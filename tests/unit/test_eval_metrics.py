"""The ranking metrics of `rag eval`, against values worked out by hand."""

from __future__ import annotations

import json
import math

import pytest

from rag.v1 import common_pb2
from rag_cli import evaluate


def test_a_document_ranks_where_its_first_chunk_is():
    sources = [common_pb2.Source(document_id=d) for d in ("b", "a", "b", "c")]
    assert evaluate.ranked_documents(sources) == ["b", "a", "c"]


def test_recall_reciprocal_rank_and_ndcg():
    ranking = ["x", "a", "y", "b"]
    relevant = frozenset({"a", "b"})
    assert evaluate.recall_at(ranking, relevant, 1) == 0.0
    assert evaluate.recall_at(ranking, relevant, 2) == 0.5
    assert evaluate.recall_at(ranking, relevant, 10) == 1.0
    assert evaluate.reciprocal_rank(ranking, relevant) == 0.5
    assert evaluate.reciprocal_rank(ranking, relevant, k=1) == 0.0
    ideal = 1 + 1 / math.log2(3)
    assert evaluate.ndcg_at(ranking, relevant) == pytest.approx(
        (1 / math.log2(3) + 1 / math.log2(5)) / ideal
    )
    assert evaluate.ndcg_at(["a", "b"], relevant) == pytest.approx(1.0)


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert evaluate.percentile(values, 0.5) == 50
    assert evaluate.percentile(values, 0.95) == 95
    assert evaluate.percentile([7.0], 0.99) == 7.0


def test_question_files_are_checked_line_by_line(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(
        json.dumps({"id": 1, "question": "a?", "relevant": ["d1"], "split": "test"})
        + "\n\n"
        + json.dumps({"id": 2, "question": "b?", "relevant": ["d2"], "split": "tune"})
        + "\n"
    )
    assert [q.id for q in evaluate.load_questions(path)] == ["1", "2"]
    assert [q.relevant for q in evaluate.load_questions(path, "tune")] == [frozenset({"d2"})]
    path.write_text('{"id": 1, "question": "a?", "relevant": "d1"}\n')
    with pytest.raises(evaluate.BadInput, match=r"q.jsonl:1: relevant must be"):
        evaluate.load_questions(path)
    path.write_text('{"id": 1}\n{not json\n')
    with pytest.raises(evaluate.BadInput, match=r"q.jsonl:1: needs id, question, relevant"):
        evaluate.load_questions(path)


def test_the_dev_set_is_split_in_halves_and_names_only_documents_it_has():
    data = evaluate.Path(__file__).parents[2] / "bench" / "data" / "eval"
    questions = evaluate.load_questions(data / "questions.jsonl")
    documents = {row["id"] for row in evaluate.read_jsonl(data / "documents.jsonl", ("id",))}
    assert len(questions) >= 150
    assert {q.split for q in questions} == {"tune", "test"}
    assert abs(sum(q.split == "test" for q in questions) - len(questions) / 2) <= 1
    assert all(q.relevant <= documents for q in questions)
    assert len({q.question for q in questions}) == len(questions)


def test_the_cited_page_is_the_first_cited_source_of_a_relevant_document():
    question = evaluate.LabelledQuestion("q", "When?", frozenset({"manual.pdf"}), page=3)
    sources = [
        common_pb2.Source(document_id="other.pdf", page=3),
        common_pb2.Source(document_id="manual.pdf", page=2),
        common_pb2.Source(document_id="manual.pdf", page=3),
    ]
    reply = evaluate.pb.QueryResponse(sources=sources, cited_sources=[1, 3])
    assert evaluate.cites_page(reply, question)
    reply = evaluate.pb.QueryResponse(sources=sources, cited_sources=[2, 3])
    assert not evaluate.cites_page(reply, question)  # the first cited page of it is wrong
    reply = evaluate.pb.QueryResponse(sources=sources, cited_sources=[1])
    assert not evaluate.cites_page(reply, question)  # nothing of the document cited


def test_the_documents_set_labels_pdf_pages_and_names_only_its_files():
    data = evaluate.Path(__file__).parents[2] / "bench" / "data" / "documents"
    questions = evaluate.load_questions(data / "questions.jsonl")
    names = {p.name for p in (data / "files").iterdir()}
    assert {q.split for q in questions} == {"tune", "test"}
    assert all(q.relevant <= names for q in questions)
    assert all(q.page for q in questions if next(iter(q.relevant)).endswith(".pdf"))
    assert {p.rsplit(".", 1)[1] for p in names} == {"pdf", "html", "docx"}
