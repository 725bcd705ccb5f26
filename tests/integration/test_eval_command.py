"""`rag eval` against the real suite: it ingests a slice of the dev set, asks its questions
through the public API, and prints and writes the figures for each search."""

from __future__ import annotations

import json

from rag_cli import evaluate
from rag_cli.commands.evaluate import eval_command
from rag_cli.main import parser
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
