"""The exact answer cache shared through real Redis by two query replicas."""

from __future__ import annotations

import asyncio

import pytest

from rag_common.cache.local import LocalTTLCache
from rag_common.cache.tiered import RedisLayer, TieredCache
from rag_common.domain import DocumentInput, ScoredChunk, UpsertResult
from rag_common.errors import Unavailable
from rag_common.security.identity import Identity
from rag_common.shared_redis import redis_client, tenant_tag
from rag_query.answer_cache import AnswerCache
from rag_query.corpus import CorpusVersions
from rag_query.documents import Documents
from rag_query.engine import QueryEngine
from rag_query.maintenance import Maintenance
from rag_query.models import GeneratedText, Question, RetrievedContext
from rag_query.semantic_cache import SemanticCache, SharedEntries
from tests.support.redis_servers import RedisServer

ACME = Identity("p", "acme", frozenset({"writer"}))


class Corpus:
    """Stands in for the internal services: answers with the current document text."""

    def __init__(self) -> None:
        self.text = "The office opens at nine."
        self.generations = 0

    async def embed(self, texts, purpose):
        return [[1.0] for _ in texts]

    async def retrieve(self, question, vector, options, identity):
        return RetrievedContext([ScoredChunk("hours", 0, 0.9, self.text)])

    async def generate(self, question, sources, options, identity):
        self.generations += 1
        return GeneratedText(sources[0].text + " [1]", "fake", cited_sources=(1,))

    async def upsert(self, documents: list[DocumentInput], identity):
        self.text = documents[0].text
        yield UpsertResult(documents[0].id, 1)

    async def erase_tenant(self, identity):
        self.text = "Nothing is known."
        return 1, 1


def replica(corpus: Corpus, server: RedisServer, *, mark_s: float = 600.0):
    client = redis_client(server.url)
    answers = AnswerCache(
        TieredCache(LocalTTLCache(100, 3600), RedisLayer(client, "answers", ttl_s=3600))
    )
    versions = CorpusVersions(client, mark_s=mark_s)
    semantic = SemanticCache(shared=SharedEntries(client))
    engine = QueryEngine(
        corpus, corpus, corpus, answers=answers, versions=versions, semantic=semantic
    )
    documents = Documents(corpus, Maintenance(), versions, forget_cached=engine.forget_tenant)
    return engine, documents, client


@pytest.fixture
async def redis_server(tmp_path):
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


async def test_replicas_share_answers_and_a_change_through_one_invalidates_both(redis_server):
    corpus = Corpus()
    (a, docs_a, client_a), (b, _, client_b) = (replica(corpus, redis_server) for _ in range(2))
    question = Question("When does the office open?")
    first = await a.answer(question, ACME)
    shared = await b.answer(question, ACME)
    assert (first.cache, shared.cache) == ("", "exact")
    assert shared.text == first.text and corpus.generations == 1
    await docs_a.upsert([DocumentInput("hours", "The office opens at ten.")], ACME)
    # Replica b never saw the write, but the version in Redis moved.
    fresh = await b.answer(question, ACME)
    assert fresh.cache == "" and "ten" in fresh.text
    await client_a.aclose()
    await client_b.aclose()


async def test_a_write_while_redis_hangs_is_refused_and_changes_nothing(redis_server):
    """Two replicas; Redis hangs (SIGSTOP) while a write comes to the first: it is refused,
    nothing is stored, and once Redis is back neither replica, nor one started since,
    serves an answer from before a change that was acknowledged."""
    corpus = Corpus()
    (a, docs_a, client_a), (b, _, client_b) = (replica(corpus, redis_server) for _ in range(2))
    question = Question("When does the office open?")
    await a.answer(question, ACME)
    assert (await b.answer(question, ACME)).cache == "exact"
    redis_server.pause()
    try:
        with pytest.raises(Unavailable) as refused:
            await docs_a.upsert([DocumentInput("hours", "The office opens at ten.")], ACME)
        assert refused.value.reason == "CORPUS_VERSION_UNAVAILABLE"
        assert "nine" in corpus.text  # nothing was written
    finally:
        redis_server.resume()
    await docs_a.upsert([DocumentInput("hours", "The office opens at ten.")], ACME)
    restarted, _, client_c = replica(corpus, redis_server)
    for engine in (b, restarted):
        answer = await engine.answer(question, ACME)
        assert "ten" in answer.text and "nine" not in answer.text
    for client in (client_a, client_b, client_c):
        await client.aclose()


async def test_while_a_write_is_under_way_no_replica_caches_and_a_lost_end_expires(
    redis_server,
):
    """A writer dies midway through a write (its end is never recorded): the tenant stays
    marked as changing, and no replica serves or keeps a cached answer until the mark
    expires; answers stay whole meanwhile."""
    corpus = Corpus()
    (a, _, client_a), (b, _, client_b) = (
        replica(corpus, redis_server, mark_s=2.0) for _ in range(2)
    )
    question = Question("When does the office open?")
    await b.answer(question, ACME)
    writer = CorpusVersions(redis_client(redis_server.url), mark_s=2.0)
    killed = writer.changing(ACME.tenant)  # kept: its end would run once collected
    await killed.__aenter__()  # and never leaves, as a writer killed midway
    corpus.text = "The office opens at ten."
    for engine in (a, b, a):  # neither served from the cache nor kept in it
        answer = await engine.answer(question, ACME)
        assert answer.cache == "" and "ten" in answer.text
    await asyncio.sleep(2.5)
    await b.answer(question, ACME)
    assert (await a.answer(question, ACME)).cache == "exact"  # cached again, once expired
    for client in (client_a, client_b):
        await client.aclose()


async def test_a_paraphrase_hits_the_semantic_cache_of_another_replica(redis_server):
    corpus = Corpus()
    (a, _, client_a), (b, _, client_b) = (replica(corpus, redis_server) for _ in range(2))
    await a.answer(Question("When does the office open?"), ACME)
    paraphrase = await b.answer(Question("When does the office open, please?"), ACME)
    assert paraphrase.cache == "semantic"
    assert paraphrase.cached_question == "When does the office open?"
    assert corpus.generations == 1
    await client_a.aclose()
    await client_b.aclose()


async def test_a_replica_takes_in_each_semantic_entry_once_as_others_add_them(redis_server):
    clients = [redis_client(redis_server.url) for _ in range(2)]
    a, b = (SemanticCache(shared=SharedEntries(client)) for client in clients)
    scope = ("acme", 1)
    assert await b.find(scope, "When does the office open?", [1.0, 0.0]) is None
    await a.remember(scope, "When does the office open?", [1.0, 0.0], "k-open")
    await b.remember(scope, "Where is the office?", [0.0, 1.0], "k-where")
    hit = await b.find(scope, "When does the office open, please?", [1.0, 0.0])
    assert hit is not None and hit.answer_key == "k-open"  # added after b last looked
    await a.remember(scope, "Who runs the office?", [0.6, 0.8], "k-who")
    assert (await b.find(scope, "Who runs the office, please?", [0.6, 0.8])).answer_key == "k-who"
    assert (await a.find(scope, "Where is the office, please?", [0.0, 1.0])).answer_key == "k-where"
    assert len(a) == len(b) == 3  # b's own entry, read back from the stream, is not doubled
    for client in clients:
        await client.aclose()


async def test_erasing_a_tenant_deletes_its_answers_from_redis_and_leaves_others(redis_server):
    corpus = Corpus()
    (a, docs_a, client), (b, _, client_b) = (replica(corpus, redis_server) for _ in range(2))
    globex = Identity("p", "globex", frozenset({"reader"}))
    for who in (ACME, globex):
        await a.answer(Question("When does the office open?"), who)
        await a.answer(Question("When does the office open, please?"), who)  # semantic
    assert (await b.answer(Question("When does the office open?"), ACME)).cache == "exact"

    async def keys(tenant: str) -> list[bytes]:
        tag = tenant_tag(tenant)
        answers = [k async for k in client.scan_iter(match=f"rag:answers:answer:{tag}:*")]
        streams = [k async for k in client.scan_iter(match=f"rag:semantic-stream:{tag}:*")]
        return answers + streams

    assert await keys("acme") and await keys("globex")
    assert await docs_a.erase_tenant("acme", ACME) == (1, 1)
    assert await keys("acme") == [] and await keys("globex")
    # The other replica holds nothing it may serve: the version moved, Redis has no copy.
    fresh = await b.answer(Question("When does the office open?"), ACME)
    assert fresh.cache == "" and "Nothing is known" in fresh.text
    assert (await b.answer(Question("When does the office open?"), globex)).cache == "exact"
    for each in (client, client_b):
        await each.aclose()
