"""`rag eval` against the real suite: it ingests a slice of the dev set, or a folder of PDF,
HTML and Word files, asks its questions through the public API, and scores each search."""

from __future__ import annotations

import json

from rag_cli import evaluate
from rag_cli.commands.evaluate import eval_command
from rag_cli.main import parser
from rag_common.security.identity import Identity
from rag_query.config import ApiKey, QuerySettings
from tests.support.suite import in_process_suite

DATA = evaluate.Path(__file__).parents[2] / "bench" / "data" / "eval"
PAGES = ("sort", "uniq", "tar", "gzip", "date", "kill")
KEY = "eval-writer-key-0123456789"


async def test_eval_compares_searches_over_a_slice_of_the_dev_set(embedder, tmp_path, capsys):
    documents = tmp_path / "documents.jsonl"
    questions = tmp_path / "questions.jsonl"
    rows = evaluate.read_jsonl(DATA / "documents.jsonl", ("id", "text"))
    documents.write_text("".join(json.dumps(r) + "\n" for r in rows if r["id"] in PAGES))
    asked = [
        q
        for q in evaluate.read_jsonl(DATA / "questions.jsonl", ("id",))
        if set(q["relevant"]) <= set(PAGES)
    ]
    questions.write_text("".join(json.dumps(q) + "\n" for q in asked))
    settings = QuerySettings(port=0, api_keys={KEY: ApiKey(tenant="eval", roles=["writer"])})
    async with in_process_suite(embedder, tmp_path / "data", settings) as suite:
        report = tmp_path / "results" / "eval.json"
        args = parser().parse_args(
            [
                "--target",
                suite.address,
                "--api-key",
                KEY,
                "eval",
                str(questions),
                "--documents",
                str(documents),
                "--compare",
                "--json",
                str(report),
            ]
        )
        assert await eval_command(args) == 0
    printed = capsys.readouterr().out
    assert f"{len(asked)} questions" in printed and "hybrid+rerank" in printed
    outcomes = {o["variant"]: o for o in json.loads(report.read_text())}
    assert set(outcomes) == {"dense", "hybrid", "hybrid+rerank"}
    for outcome in outcomes.values():
        assert outcome["questions"] == len(asked)
        assert 0.0 <= outcome["recall"]["1"] <= outcome["recall"]["10"] <= 1.0
        # Six unrelated tools: any working retrieval ranks the right page near the top.
        assert outcome["mrr_at_10"] >= 0.8
        assert outcome["latency_ms"]["p50"] > 0
    # No reranker is configured: asked for one, every answer says so.
    assert outcomes["hybrid+rerank"]["degraded"] == {"no_rerank": len(asked)}
    assert outcomes["dense"]["degraded"] == {}


async def test_eval_over_pdf_html_and_word_files_scores_the_cited_page(embedder, tmp_path, capsys):
    """The hand-written documents as files: `rag eval` ingests the folder (each file's id
    is its name in it) and scores whether each answer cites the labelled page of a PDF."""
    folder = DATA.parent / "documents"
    settings = QuerySettings(port=0, api_keys={KEY: ApiKey(tenant="eval", roles=["writer"])})
    async with in_process_suite(embedder, tmp_path / "data", settings) as suite:
        report = tmp_path / "eval.json"
        command = ["eval", str(folder / "questions.jsonl"), "--documents", str(folder / "files")]
        args = parser().parse_args(
            ["--target", suite.address, "--api-key", KEY, *command, "--json", str(report)]
        )
        assert await eval_command(args) == 0
        stored = await suite.retriever.list_documents(Identity("t", "eval", frozenset()))
    printed = capsys.readouterr().out
    assert "ingested" in printed and "page" in printed
    assert {d.document_id for d in stored.documents} == {
        p.name for p in (folder / "files").iterdir()
    }
    (outcome,) = json.loads(report.read_text())
    labelled = evaluate.load_questions(folder / "questions.jsonl")
    assert outcome["questions"] == len(labelled)
    assert outcome["paged"] == sum(bool(q.page) for q in labelled) >= 20
    # Every PDF question is answered from its page: a chunk never spans two pages.
    assert outcome["cites_page"] >= 0.9
    assert outcome["mrr_at_10"] >= 0.85
