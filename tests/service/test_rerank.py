"""The rerank stage on a real RetrievalService against a fake rerank server that speaks
text-embeddings-inference's /rerank and the Cohere-style /v1/rerank and fails on command;
and the in-process CrossEncoder adapter on a real (untrained-head) model folder."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from rag.v1 import document_service_pb2 as doc_pb
from rag.v1 import document_service_pb2_grpc as doc_grpc
from rag.v1 import query_service_pb2 as qpb
from rag.v1 import query_service_pb2_grpc as qpb_grpc
from rag.v1 import retrieval_service_pb2 as pb
from rag_query.config import ApiKey, QuerySettings
from rag_retrieval.config import RetrievalSettings
from rag_retrieval.rerank import RerankStage
from tests.service.test_retrieval_service import ACME, Stack, doc, upsert
from tests.support.fake_rerank import FakeRerankServer, overlap_score
from tests.support.suite import in_process_suite

# The fake scores by shared words, so "the blue door" ranks the passage naming all three
# first, whatever order fusion gave.
PASSAGES = {
    "red": "The red door opens onto the garden and is painted every spring.",
    "green": "A green gate leads from the yard to the lane behind the houses.",
    "blue": "Behind the blue door is the storeroom where the tools are kept.",
    "none": "Lunch is served at noon in the hall on the first floor.",
}
QUESTION = "what is behind the blue door"


@pytest.fixture(scope="module")
def rerank_server():
    server = FakeRerankServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["tei", "cohere"], scope="module")
async def reranking_stack(request, embedder, rerank_server, tmp_path_factory):
    stack = Stack(
        embedder,
        tmp_path_factory.mktemp(f"rerank-{request.param}"),
        reranker=request.param,
        reranker_url=rerank_server.url,
        reranker_model="rerank-test",
        reranker_api_key="sk-rerank",
        rerank_candidates=4,
        rerank_timeout_s=0.3,
    )
    await stack.start()
    documents = [doc(i, text) for i, text in PASSAGES.items()]
    await upsert(stack.stub, pb.UpsertDocumentsRequest(documents=documents), ACME)
    yield stack
    await stack.stop_retrieval()
    await stack.embedding.close()
    await stack.embedding_host.stop(0)


@pytest.fixture
def stack(rerank_server, reranking_stack):
    """The stack, with a healthy reranker and a fresh stage (its breaker closed)."""
    rerank_server.reset()
    rerank_server.hang_s = 5.0
    stage = reranking_stack.retriever.rerank_stage
    reranking_stack.retriever.rerank_stage = RerankStage(stage.reranker, stage.policy)
    return reranking_stack


async def retrieve(stack, question=QUESTION, **fields) -> pb.RetrieveResponse:
    fields.setdefault("top_k", 2)
    return await stack.stub.Retrieve(pb.RetrieveRequest(query=question, **fields), metadata=ACME)


async def test_results_come_back_in_the_rerankers_order_with_its_scores(stack, rerank_server):
    reply = await retrieve(stack)
    assert list(reply.degraded) == []
    assert reply.chunks[0].document_id == "blue"
    expected = overlap_score(QUESTION, PASSAGES["blue"])
    assert reply.chunks[0].score == pytest.approx(expected)
    assert reply.chunks[0].score >= reply.chunks[1].score
    [(path, body, headers)] = rerank_server.requests
    sent = body.get("texts") or body.get("documents")
    assert len(sent) == 4 and body["query"] == QUESTION  # rerank_candidates, not top_k
    assert path == ("/rerank" if stack.settings.reranker == "tei" else "/v1/rerank")
    assert headers["authorization"] == "Bearer sk-rerank"
    if stack.settings.reranker == "cohere":
        assert body["model"] == "rerank-test"


@pytest.mark.parametrize("mode", ["error500", "ratelimit", "malformed"])
async def test_a_failing_reranker_gives_fused_order_flagged_no_rerank(stack, rerank_server, mode):
    rerank_server.reset(mode)
    fused = await retrieve(stack, rerank=False, top_k=4)  # the same candidates, unreranked
    reply = await retrieve(stack, top_k=4)
    assert list(reply.degraded) == ["no_rerank"]
    assert [c.document_id for c in reply.chunks] == [c.document_id for c in fused.chunks]


async def test_a_failing_reranker_is_one_warning_not_one_per_search(stack, rerank_server, caplog):
    rerank_server.reset("error500")
    for _ in range(4):
        assert list((await retrieve(stack)).degraded) == ["no_rerank"]
    warnings = [r for r in caplog.records if r.getMessage() == "results not reranked"]
    assert len(warnings) == 1


async def test_a_hanging_reranker_costs_at_most_its_timeout(stack, rerank_server):
    rerank_server.reset("hang")
    rerank_server.hang_s = 3.0
    started = time.monotonic()
    reply = await retrieve(stack)
    assert time.monotonic() - started < 2.0  # rerank_timeout_s is 0.3
    assert list(reply.degraded) == ["no_rerank"] and len(reply.chunks) == 2


async def test_repeated_failures_open_the_rerankers_breaker_and_stop_calling_it(
    stack, rerank_server
):
    rerank_server.reset("error500")
    for _ in range(5):
        await retrieve(stack)
    calls = len(rerank_server.requests)
    assert stack.retriever.rerank_stage.breaker.state.value == "open"
    reply = await retrieve(stack)
    assert list(reply.degraded) == ["no_rerank"] and len(reply.chunks) == 2
    assert len(rerank_server.requests) == calls
    # Only the reranker's breaker: the store's is untouched, searches keep working.
    assert stack.retriever.store_breaker.state.value == "closed"


async def test_a_request_can_skip_reranking(stack, rerank_server):
    reply = await retrieve(stack, rerank=False)
    assert list(reply.degraded) == [] and rerank_server.requests == []


async def test_past_its_concurrency_the_stage_is_shed_not_queued(stack, rerank_server):
    rerank_server.reset("hang")
    rerank_server.hang_s = 0.25
    stage = stack.retriever.rerank_stage
    limit = stage.policy.max_concurrent
    replies = await asyncio.gather(*(retrieve(stack) for _ in range(limit + 4)))
    assert sum(list(r.degraded) == ["no_rerank"] for r in replies) >= 4
    assert len(rerank_server.requests) <= limit


async def test_asked_for_without_a_reranker_the_results_say_no_rerank(embedder, tmp_path):
    stack = Stack(embedder, tmp_path)
    await stack.start()
    try:
        documents = [doc(i, text) for i, text in PASSAGES.items()]
        await upsert(stack.stub, pb.UpsertDocumentsRequest(documents=documents), ACME)
        assert list((await retrieve(stack)).degraded) == []
        assert list((await retrieve(stack, rerank=True)).degraded) == ["no_rerank"]
    finally:
        await stack.stop_retrieval()
        await stack.embedding.close()
        await stack.embedding_host.stop(0)


async def test_the_answer_says_no_rerank_and_is_not_cached(embedder, rerank_server, tmp_path):
    key = "acme-rerank-test-key"
    settings = QuerySettings(port=0, api_keys={key: ApiKey(tenant="acme", roles=["writer"])})
    # The reranker fails at once below (HTTP 500): the time limit only has to leave the
    # first, healthy call room on a busy machine.
    retrieval = RetrievalSettings(
        reranker="tei", reranker_url=rerank_server.url, rerank_timeout_s=2.0
    )
    auth = (("authorization", f"Bearer {key}"),)
    async with in_process_suite(embedder, tmp_path, settings, retrieval) as suite:
        documents = [doc(i, text) for i, text in PASSAGES.items()]
        await doc_grpc.DocumentServiceStub(suite.channel).IngestDocuments(
            doc_pb.IngestDocumentsRequest(documents=documents), metadata=auth
        )
        stub = qpb_grpc.QueryServiceStub(suite.channel)
        ok = await stub.Query(qpb.QueryRequest(question=QUESTION), metadata=auth)
        assert list(ok.degraded) == [] and ok.sources[0].document_id == "blue"
        rerank_server.reset("error500")
        asked = qpb.QueryRequest(question="Which room lies behind the door painted blue?")
        degraded = await stub.Query(asked, metadata=auth)
        assert list(degraded.degraded) == ["no_rerank"] and degraded.text
        again = await stub.Query(asked, metadata=auth)
        assert again.cache == ""  # a degraded answer must not outlive its cause


def test_cross_encoder_scores_each_pair_from_a_local_folder(tmp_path: Path):
    from sentence_transformers import CrossEncoder

    from rag_embedding.adapters.sentence_transformer import packaged_model_path
    from rag_retrieval.adapters.rerankers import CrossEncoderReranker

    # No trained cross-encoder is at hand: the embedding model with a fresh scoring head
    # is a real CrossEncoder folder, which is what the adapter has to load and drive.
    CrossEncoder(packaged_model_path(), num_labels=1).save(str(tmp_path))
    reranker = CrossEncoderReranker(tmp_path)
    texts = list(PASSAGES.values())
    scores = asyncio.run(reranker.scores(QUESTION, texts))
    direct = CrossEncoder(str(tmp_path)).predict([(QUESTION, t) for t in texts])
    assert scores == pytest.approx([float(s) for s in direct], abs=1e-5)
    assert len(set(scores)) == len(texts)
    asyncio.run(reranker.close())


def test_a_reranker_without_its_address_is_refused_at_start(tmp_path):
    with pytest.raises(ValueError, match="reranker_url"):
        RetrievalSettings(reranker="tei")
    with pytest.raises(ValueError, match="reranker_path"):
        RetrievalSettings(reranker="cross-encoder")
