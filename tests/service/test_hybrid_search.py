"""Hybrid search on a real RetrievalService: real model, real Qdrant engine, BM25 beside the
dense index under the same tenant and metadata filters, kept in step by re-ingest."""

from __future__ import annotations

import grpc
import pytest

from rag.v1 import common_pb2
from rag.v1 import retrieval_service_pb2 as pb
from rag_retrieval.config import RetrievalSettings
from tests.service.test_retrieval_service import ACME, GLOBEX, Stack, ask, doc, upsert

DENSE = common_pb2.SEARCH_MODE_DENSE
HYBRID = common_pb2.SEARCH_MODE_HYBRID
# Reciprocal rank fusion scores a chunk sum(weight / (k + rank)) over the indexes that found
# it: above this, both the dense and the BM25 index found the chunk.
_DEFAULTS = RetrievalSettings()
ONE_INDEX_AT_BEST = _DEFAULTS.dense_weight / (_DEFAULTS.rrf_k + 1)

# Passages on one topic, one of which alone names an identifier: embeddings read the
# identifier as a handful of word pieces, BM25 as one rare, exact term.
CORPUS = {
    "retries": "The client retries a failed request three times, waiting longer each time, "
    "before it reports the error to the caller.",
    "timeouts": "Every request carries a deadline; a request that runs past it is cancelled "
    "and the caller gets an error saying the deadline passed.",
    "backoff": "Between attempts the client sleeps for an exponentially growing interval with "
    "random jitter, so clients that failed together do not retry together.",
    "quirk": "Setting qzx_flush_window to zero makes the writer flush after every record, which "
    "is slow but never loses data on a crash.",
    "pooling": "Connections are pooled per host and reused across requests; idle ones are "
    "closed after ninety seconds.",
}


@pytest.fixture(scope="module")
async def stack(embedder, tmp_path_factory):
    stack = Stack(embedder, tmp_path_factory.mktemp("hybrid"))
    await stack.start()
    documents = [doc(i, text, lang="en") for i, text in CORPUS.items()]
    documents.append(doc("quirk-fr", "Mettre qzx_flush_window à zéro force l'écriture.", lang="fr"))
    await upsert(stack.stub, pb.UpsertDocumentsRequest(documents=documents), ACME)
    # Another tenant's document that names the same identifier, more often.
    leak = doc("quirk", "qzx_flush_window qzx_flush_window: the globex secret is 42.")
    await upsert(stack.stub, pb.UpsertDocumentsRequest(documents=[leak]), GLOBEX)
    yield stack
    await stack.stop_retrieval()
    await stack.embedding.close()
    await stack.embedding_host.stop(0)


def lang(value: str, operator=common_pb2.FILTER_OPERATOR_EQUALS) -> common_pb2.FilterCondition:
    return common_pb2.FilterCondition(key="lang", operator=operator, values=[value])


async def test_an_exact_identifier_ranks_its_passage_first_in_hybrid_search(stack):
    question = "what does qzx_flush_window do"
    hybrid = await ask(stack, question, top_k=3, search_mode=HYBRID)
    assert {h.document_id for h in hybrid[:2]} == {"quirk", "quirk-fr"}
    assert all(h.score > ONE_INDEX_AT_BEST for h in hybrid[:2])  # BM25 found both
    assert all(h.score <= ONE_INDEX_AT_BEST for h in hybrid[2:])  # no other has the term
    # Dense is the default: cosine similarities, not fusion scores.
    default = await ask(stack, question, top_k=3)
    dense = await ask(stack, question, top_k=3, search_mode=DENSE)
    assert [h.score for h in default] == [h.score for h in dense]
    best_fused = (_DEFAULTS.dense_weight + _DEFAULTS.lexical_weight) / (_DEFAULTS.rrf_k + 1)
    assert dense[0].score > best_fused  # a cosine similarity: no fusion score is this high


async def test_the_tenant_and_metadata_filters_bind_the_lexical_index_too(stack):
    hits = await ask(stack, "qzx_flush_window", top_k=10, search_mode=HYBRID)
    assert all("globex" not in h.text for h in hits)
    assert "quirk" in {h.document_id for h in hits}
    french_excluded = await ask(
        stack, "qzx_flush_window", top_k=10, search_mode=HYBRID, filters=[lang("en")]
    )
    assert "quirk-fr" not in {h.document_id for h in french_excluded}
    assert french_excluded[0].document_id == "quirk"
    globex = await ask(stack, "qzx_flush_window", metadata=GLOBEX, search_mode=HYBRID)
    assert [h.document_id for h in globex] == ["quirk"] and "globex" in globex[0].text


async def test_a_score_threshold_holds_for_chunks_the_lexical_index_finds(stack):
    # "deadline" is a rare term that only one passage has, but the question is about bread.
    question = "how long should bread dough rise before the deadline"
    loose = await ask(stack, question, top_k=5, search_mode=HYBRID)
    assert "timeouts" in {h.document_id for h in loose}
    strict = await ask(stack, question, top_k=5, search_mode=HYBRID, score_threshold=0.6)
    assert strict == []


async def test_reingest_replaces_a_document_in_both_indexes(stack):
    first = doc("changing", "The zyxwave adapter converts legacy records.", lang="en")
    await upsert(stack.stub, pb.UpsertDocumentsRequest(documents=[first]), ACME)
    assert (await ask(stack, "zyxwave", top_k=1, search_mode=HYBRID))[0].document_id == "changing"
    second = doc("changing", "The plumvortex adapter converts modern records.", lang="en")
    await upsert(stack.stub, pb.UpsertDocumentsRequest(documents=[second]), ACME)
    now = await ask(stack, "plumvortex", top_k=1, search_mode=HYBRID)
    assert now[0].document_id == "changing" and "plumvortex" in now[0].text
    old = await ask(stack, "zyxwave", top_k=10, search_mode=HYBRID)
    assert all("zyxwave" not in h.text for h in old)


async def test_a_section_heading_makes_a_deep_chunk_findable_by_its_topic(stack):
    body = " ".join(
        f"Step {i}: take the next form from the tray and stamp it twice." for i in range(12)
    )
    text = f"# Office manual\n\n## Glorbnak procedure\n\n{body}\n\n## Lunch\n\nLunch is at noon."
    await upsert(
        stack.stub, pb.UpsertDocumentsRequest(documents=[doc("manual", text, lang="en")]), ACME
    )
    hits = await ask(stack, "glorbnak", top_k=10, search_mode=HYBRID)
    deep = [h for h in hits if h.document_id == "manual" and h.chunk_index > 0]
    assert deep and all(h.score > ONE_INDEX_AT_BEST for h in deep), "BM25 must match them"
    assert all("Glorbnak" not in h.text for h in deep)  # the stored text is unchanged


async def test_a_question_of_only_stopwords_falls_back_to_dense_search(stack):
    hits = await ask(stack, "what is it", top_k=2, search_mode=HYBRID)
    assert len(hits) == 2 and all(-1.0 <= h.score <= 1.0 for h in hits)


async def test_an_unknown_search_mode_is_named_in_the_error(stack, expect_error):
    await expect_error(
        stack.stub.Retrieve(pb.RetrieveRequest(query="x", search_mode=7), metadata=ACME),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="search_mode",
    )
