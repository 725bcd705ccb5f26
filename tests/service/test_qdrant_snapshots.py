"""Backups of a Qdrant server through its snapshot API (a local stand-in for the server)."""

from __future__ import annotations

import pytest

from rag_common.errors import FailedPrecondition, InvalidArgument, Unavailable
from rag_retrieval.adapters.qdrant_store import QdrantStore
from tests.support.fake_qdrant import FakeQdrant


@pytest.fixture
def server():
    fake = FakeQdrant("rag_chunks", api_key="secret-key").start()
    yield fake
    fake.stop()


def store_for(server: FakeQdrant) -> QdrantStore:
    return QdrantStore("rag_chunks", 384, url=server.url, api_key="secret-key")


async def test_a_server_snapshot_round_trips_and_is_not_left_on_the_server(server, tmp_path):
    server.points = [{"id": n} for n in range(3)]
    store = store_for(server)
    archive = tmp_path / "backup.tar.gz"
    await store.archive(archive)
    assert server.snapshots == {}  # downloaded, then deleted on the server
    server.points = [{"id": n} for n in range(5)]  # written after the backup
    assert await store.restore_archive(archive) == 3
    assert server.points == [{"id": n} for n in range(3)]
    await store.close()


async def test_a_file_that_is_no_snapshot_is_refused_and_changes_nothing(server, tmp_path):
    server.points = [{"id": 1}]
    archive = tmp_path / "junk.tar.gz"
    archive.write_bytes(b"not a snapshot")
    with pytest.raises(InvalidArgument):
        await store_for(server).restore_archive(archive)
    assert server.points == [{"id": 1}]


async def test_a_server_that_is_down_is_unavailable(server, tmp_path):
    server.down = True
    with pytest.raises(Unavailable):
        await store_for(server).archive(tmp_path / "backup.tar.gz")


async def test_local_mode_has_no_snapshots(tmp_path):
    store = QdrantStore("rag_chunks", 384, path=":memory:")
    with pytest.raises(FailedPrecondition):
        await store.archive(tmp_path / "backup.tar.gz")
