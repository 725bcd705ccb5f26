"""A rolling upgrade has old and new pods side by side: this commit's query service against
the previous release's retrieval, embedding and generation answers normally, and the other
way round. The previous release runs from a git worktree of its commit, as processes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from rag.v1 import common_pb2
from rag.v1 import document_service_pb2 as doc_pb
from rag.v1 import document_service_pb2_grpc as doc_grpc
from rag.v1 import query_service_pb2 as pb
from rag.v1 import query_service_pb2_grpc as pb_grpc
from rag_cli.launcher import LocalCluster

ROOT = Path(__file__).parents[2]
# The commit of the release before this one (`make lint` checks the contracts against it).
PREVIOUS_RELEASE = (ROOT / "PREVIOUS_RELEASE").read_text().strip()
KEY = "mixed-key"
AUTH = [("authorization", f"Bearer {KEY}")]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def previous(tmp_path_factory) -> dict[str, str]:
    """The environment that runs a process of the previous release."""
    folder = tmp_path_factory.mktemp("previous") / "tree"
    worktree = ["git", "-C", str(ROOT), "worktree"]
    found = subprocess.run(
        ["git", "-C", str(ROOT), "cat-file", "-e", f"{PREVIOUS_RELEASE}^{{commit}}"],
        capture_output=True,
    )
    if found.returncode != 0:
        pytest.skip(f"this clone lacks the previous release {PREVIOUS_RELEASE[:8]}")
    subprocess.run([*worktree, "add", "--detach", str(folder), PREVIOUS_RELEASE], check=True)
    try:
        subprocess.run(
            ["scripts/gen_proto.sh"],
            cwd=folder,
            env={**os.environ, "PYTHON": sys.executable},
            check=True,
            capture_output=True,
        )
        paths = ["gen", "libs/common", "cli", *(f"services/{s}" for s in _SERVICES)]
        yield {"PYTHONPATH": os.pathsep.join(str(folder / p) for p in paths)}
    finally:
        subprocess.run([*worktree, "remove", "--force", str(folder)], check=False)


_SERVICES = ("query", "retrieval", "generation", "embedding")


async def answers_through(cluster: LocalCluster) -> list[pb.QueryResponse]:
    """Ingest a document through query, then ask about it: once, then 12 new questions at
    once (which a new query service sends to retrieval together, where it can)."""
    async with grpc.aio.insecure_channel(cluster.address("query")) as channel:
        await doc_grpc.DocumentServiceStub(channel).IngestDocuments(
            doc_pb.IngestDocumentsRequest(
                documents=[
                    common_pb2.Document(
                        id="falls", text="The waterfall at Dettifoss drops 44 metres."
                    )
                ]
            ),
            metadata=AUTH,
            timeout=60,
        )
        stub = pb_grpc.QueryServiceStub(channel)
        questions = ["How far does the Dettifoss waterfall drop?"]
        questions += [f"How far does the Dettifoss waterfall drop, take {n}?" for n in range(12)]

        async def ask(question: str) -> pb.QueryResponse:
            request = pb.QueryRequest(
                question=question, options=pb.QueryOptions(provider="extractive")
            )
            return await stub.Query(request, metadata=AUTH, timeout=30)

        first = await ask(questions[0])
        return [first, *await asyncio.gather(*(ask(q) for q in questions[1:]))]


@pytest.mark.parametrize("old", [("retrieval", "generation", "embedding"), ("query",)])
async def test_old_and_new_services_answer_each_other(previous, tmp_path, old):
    cluster = LocalCluster.on_free_ports(
        tmp_path,
        env={
            "RAG_QUERY_API_KEYS": json.dumps({KEY: {"tenant": "mixed", "roles": ["writer"]}}),
            "RAG_GENERATION_PROVIDERS": json.dumps(["extractive"]),
        },
    )
    cluster.process_env = {service: previous for service in old}
    cluster.start()
    try:
        await cluster.wait_serving(within_s=240)
        replies = await answers_through(cluster)
    finally:
        cluster.stop()
    for reply in replies:
        assert not reply.degraded and "44 metres" in reply.text
