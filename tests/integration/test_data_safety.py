"""What callers were told is stored or deleted stays so: across caches, hangs and crashes.

The four services run as processes with the real model, store and Redis. A deleted or
replaced document's text must never reach a caller again, by any path (exact, semantic and
retrieval-fallback caches; Query and StreamQuery), with retrieval up, hung or down; and a
retrieval process killed in the middle of an ingest leaves every document wholly its old or
wholly its new version, with the error saying which documents were stored; and a backup
restored into an emptied store answers as before, with no answer cached in between served.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil

import grpc
import pytest

from rag.v1 import common_pb2
from rag.v1 import document_service_pb2 as doc_pb
from rag.v1 import document_service_pb2_grpc as doc_grpc
from rag.v1 import query_service_pb2 as pb
from rag.v1 import query_service_pb2_grpc as pb_grpc
from rag.v1 import retrieval_service_pb2 as retrieval_pb
from rag.v1 import retrieval_service_pb2_grpc as retrieval_grpc
from rag_cli.backup import create_backup, restore_backup
from rag_cli.launcher import LocalCluster
from rag_common.security.identity import Identity
from rag_common.status import error_info
from tests.support.redis_servers import RedisServer

pytestmark = pytest.mark.slow

KEY = "safety-key"
TENANT = "safety"
AUTH = [("authorization", f"Bearer {KEY}")]
BUDGET_MS = 2000
_UNIQUE = itertools.count(100)


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory):
    folder = tmp_path_factory.mktemp("safety")
    redis = RedisServer(folder).start()
    cluster = LocalCluster.on_free_ports(folder)
    cluster.env.update(
        {
            "RAG_QUERY_API_KEYS": json.dumps({KEY: {"tenant": TENANT, "roles": ["writer"]}}),
            "RAG_GENERATION_PROVIDERS": json.dumps(["extractive"]),
            "RAG_QUERY_REDIS_URL": redis.url,
            "RAG_EMBEDDING_REDIS_URL": redis.url,
            "RAG_QUERY_BREAKER_RECOVERY_S": "2",
        }
    )
    cluster.start()
    try:
        await cluster.wait_serving(within_s=240)
        yield cluster
    finally:
        cluster.resume(tuple(cluster.processes))
        cluster.stop()
        redis.stop()


@pytest.fixture
async def stubs(cluster):
    async with grpc.aio.insecure_channel(cluster.address("query")) as channel:
        yield pb_grpc.QueryServiceStub(channel), doc_grpc.DocumentServiceStub(channel)


async def ingest(documents_stub, *documents: common_pb2.Document):
    request = doc_pb.IngestDocumentsRequest(documents=documents)
    return await documents_stub.IngestDocuments(request, metadata=AUTH, timeout=120)


async def everything_said(query_stub, question: str, max_tokens: int) -> str:
    """All text a caller sees for `question` through Query and StreamQuery (or the errors)."""
    options = pb.QueryOptions(budget_ms=BUDGET_MS, max_tokens=max_tokens)
    seen = []
    try:
        reply = await query_stub.Query(
            pb.QueryRequest(question=question, options=options), metadata=AUTH, timeout=10
        )
        seen += [reply.text, *(s.text for s in reply.sources), ",".join(reply.degraded)]
    except grpc.aio.AioRpcError as exc:
        seen.append(f"{exc.code().name}: {exc.details()}")
    try:
        request = pb.StreamQueryRequest(question=question, options=options)
        async for message in query_stub.StreamQuery(request, metadata=AUTH, timeout=10):
            seen.append(message.delta)
            seen += [message.done.text, *(s.text for s in message.done.sources)]
    except grpc.aio.AioRpcError as exc:
        seen.append(f"{exc.code().name}: {exc.details()}")
    return "\n".join(seen)


async def until_answered(query_stub, within_s: float = 10.0) -> None:
    """Wait until a question gets a whole answer again (breakers closed after a fault)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        said = await everything_said(query_stub, "When does the cafeteria open?", next(_UNIQUE))
        if "noon" in said and "UNAVAILABLE" not in said and "no_context" not in said:
            return
        assert loop.time() < deadline, said
        await asyncio.sleep(0.2)


QUESTIONS = [
    "What is the vault code for Project Zephyr?",
    "Tell me the vault code of Project Zephyr.",  # a paraphrase: the semantic cache's path
]


async def test_deleted_or_replaced_text_never_returns(cluster, stubs):
    query_stub, documents_stub = stubs
    await ingest(
        documents_stub,
        common_pb2.Document(id="zephyr", text="The vault code for Project Zephyr is 77041."),
        common_pb2.Document(id="orion", text="The vault code for Project Orion is 55123."),
        common_pb2.Document(id="cafeteria", text="The cafeteria opens at noon on weekdays."),
    )
    orion = "What is the vault code for Project Orion?"
    # Asked before the change at these options, so every cache (answers, semantic, the
    # retrieval fallback) holds the old text for them.
    tokens = next(_UNIQUE)
    for question in [*QUESTIONS, orion]:
        said = await everything_said(query_stub, question, tokens)
        assert "77041" in said or "55123" in said, said

    delete = doc_pb.DeleteDocumentsRequest(document_ids=["zephyr"])
    await documents_stub.DeleteDocuments(delete, metadata=AUTH, timeout=30)
    await ingest(
        documents_stub,
        common_pb2.Document(id="orion", text="The vault code for Project Orion is 90210."),
    )

    async def check(state: str) -> None:
        for question in [*QUESTIONS, orion]:
            for max_tokens in (tokens, next(_UNIQUE)):  # cached options, and new ones
                said = await everything_said(query_stub, question, max_tokens)
                assert "77041" not in said and "55123" not in said, (state, question, said)

    # Hung and down first: a question asked with retrieval up would refresh the fallback.
    cluster.pause(("retrieval",))
    try:
        await check("retrieval hung")
    finally:
        cluster.resume(("retrieval",))
    cluster.kill(("retrieval",))
    try:
        await check("retrieval down")
    finally:
        cluster.start(("retrieval",))
        await cluster.wait_serving(within_s=120)
    await until_answered(query_stub)
    await check("retrieval up")
    assert "90210" in await everything_said(query_stub, orion, next(_UNIQUE))


def versioned(index: int, version: str, sentences: int) -> common_pb2.Document:
    """Document `index` in one version: every chunk says which version it belongs to."""
    sentence = f"Record {index} {version} states fact number"
    text = " ".join(f"{sentence} {n} in full detail for the archive." for n in range(sentences))
    return common_pb2.Document(id=f"doc-{index}", text=text, metadata={"doc": str(index)})


async def chunks_of(cluster: LocalCluster, index: int) -> list[str]:
    """Every chunk retrieval returns for one document."""
    identity = Identity("tests", TENANT, frozenset({"reader"}))
    metadata = cluster.credentials().metadata(
        "retrieval", identity, method="/rag.v1.RetrievalService/Retrieve"
    )
    request = retrieval_pb.RetrieveRequest(
        query=f"Record {index} states fact",
        top_k=100,
        filters=[
            common_pb2.FilterCondition(
                key="doc", operator=common_pb2.FILTER_OPERATOR_EQUALS, values=[str(index)]
            )
        ],
    )
    async with grpc.aio.insecure_channel(cluster.address("retrieval")) as channel:
        reply = await retrieval_grpc.RetrievalServiceStub(channel).Retrieve(
            request, metadata=metadata, timeout=30
        )
    return [chunk.text for chunk in reply.chunks]


async def test_retrieval_killed_mid_ingest_leaves_whole_documents(cluster, stubs):
    query_stub, documents_stub = stubs
    await until_answered(query_stub)
    count = 100
    old = [versioned(i, "OLD", 40) for i in range(count)]  # several chunks each
    new = [versioned(i, "NEW", 2) for i in range(count)]  # one chunk each
    await ingest(documents_stub, *old)
    old_chunks = len(await chunks_of(cluster, 0))
    assert old_chunks > 1

    async def kill_once_writing_starts() -> None:
        # Writes start once the whole batch is embedded; kill as soon as one is visible.
        while "NEW" not in " ".join(await chunks_of(cluster, 0)):
            await asyncio.sleep(0.005)
        cluster.kill(("retrieval",))

    killer = asyncio.ensure_future(kill_once_writing_starts())
    stored = count
    try:
        await ingest(documents_stub, *new)
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc.details()
        stored = int(error_info(exc).metadata["stored_documents"])
        if stored < count:
            assert error_info(exc).metadata["retry_from"] == f"doc-{stored}"
    finally:
        await asyncio.wait_for(killer, 60)
    cluster.start(("retrieval",))
    await cluster.wait_serving(within_s=120)
    print(f"\nretrieval killed after {stored} of {count} documents were acknowledged")

    versions = []
    for index in range(count):
        texts = await chunks_of(cluster, index)
        is_new = all("NEW" in t for t in texts) and len(texts) == 1
        is_old = all("OLD" in t for t in texts) and len(texts) == old_chunks
        assert is_new or is_old, (index, len(texts))
        versions.append("new" if is_new else "old")
    assert versions[:stored] == ["new"] * stored  # what the error said was stored, is

    # The caller sends the rest again, as the error told it to: now all are new.
    if stored < count:
        await ingest(documents_stub, *new[stored:])
    for index in range(count):
        assert all("NEW" in t for t in await chunks_of(cluster, index))


async def test_a_backup_restored_into_an_empty_store_answers_as_before(cluster, stubs, tmp_path):
    query_stub, documents_stub = stubs
    await until_answered(query_stub)
    await ingest(documents_stub, common_pb2.Document(id="atlas", text="The atlas has 12 maps."))
    question = pb.QueryRequest(
        question="How many maps does the atlas have?",
        options=pb.QueryOptions(budget_ms=BUDGET_MS, max_tokens=next(_UNIQUE)),
    )
    before = await query_stub.Query(question, metadata=AUTH, timeout=10)
    assert "12 maps" in before.text
    archive = await create_backup(
        cluster.address("retrieval"),
        tmp_path / "backups",
        keep=1,
        timeout_s=60,
        credentials=cluster.credentials("cli"),
    )

    await ingest(documents_stub, common_pb2.Document(id="atlas", text="The atlas has 99 maps."))
    changed = await query_stub.Query(question, metadata=AUTH, timeout=10)
    assert "99 maps" in changed.text  # and now cached at this version

    cluster.kill(("retrieval",))  # lose the store entirely
    shutil.rmtree(cluster.data_dir / "qdrant-edge")
    cluster.start(("retrieval",))
    await cluster.wait_serving(within_s=120)
    chunks = await restore_backup(
        cluster.address("retrieval"),
        archive,
        cluster.env["RAG_QUERY_REDIS_URL"],
        timeout_s=60,
        credentials=cluster.credentials("cli"),
    )
    assert chunks > 0
    await until_answered(query_stub)
    after = await query_stub.Query(question, metadata=AUTH, timeout=10)
    assert after.cache == ""  # the answer cached before the restore is not served
    assert after.text == before.text
    assert [(s.document_id, s.chunk_index) for s in after.sources] == [
        (s.document_id, s.chunk_index) for s in before.sources
    ]
