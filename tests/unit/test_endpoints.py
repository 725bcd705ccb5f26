"""Replicas of an internal service: round-robin, ejection of one that keeps failing, panic."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter

from rag_common.client.endpoints import Endpoints, Target
from rag_common.errors import DeadlineExceeded


class Channel:
    """Stands for a gRPC channel: picking a replica never touches it."""

    async def close(self, grace=None) -> None:
        pass


def pool(*addresses: str, clock=time.monotonic) -> Endpoints:
    return Endpoints(
        ",".join(addresses), lambda a, authority: Channel(), name="retrieval", clock=clock
    )


def test_targets_name_fixed_addresses_or_a_name_to_resolve():
    assert Target.parse("10.0.0.1:5,10.0.0.2:5").addresses == ("10.0.0.1:5", "10.0.0.2:5")
    assert Target.parse("ipv4:10.0.0.1:5").addresses == ("10.0.0.1:5",)
    assert Target.parse("localhost:5,127.0.0.1:6").addresses == ("127.0.0.1:5", "127.0.0.1:6")
    named = Target.parse("dns:///rag-retrieval:50052")
    assert (named.host, named.port, named.addresses) == ("rag-retrieval", 50052, ())


def test_calls_take_turns_and_a_replica_that_keeps_failing_is_left_out_then_probed():
    now = [0.0]
    replicas = pool("10.0.0.1:5", "10.0.0.2:5", clock=lambda: now[0])
    assert Counter(replicas.pick().address for _ in range(10)) == {
        "10.0.0.1:5": 5,
        "10.0.0.2:5": 5,
    }
    hung = replicas.all[0]
    for _ in range(3):  # three races lost, or three deadlines, in a row
        hung.breaker.record_failure(DeadlineExceeded("slower than another replica"))
    assert {replicas.pick().address for _ in range(10)} == {"10.0.0.2:5"}
    now[0] += 3.5  # its ejection is over: one probe
    picked = [replicas.pick().address for _ in range(4)]
    assert picked.count("10.0.0.1:5") == 1


def test_a_second_attempt_goes_to_another_replica():
    replicas = pool("10.0.0.1:5", "10.0.0.2:5", "10.0.0.3:5")
    first = replicas.pick()
    assert replicas.pick(avoid={first.address}).address != first.address


def test_with_every_replica_ejected_calls_go_to_all_of_them_again():
    replicas = pool("10.0.0.1:5", "10.0.0.2:5")
    for replica in replicas.all:
        for _ in range(3):
            replica.breaker.record_failure(DeadlineExceeded("hung"))
    assert {replicas.pick().address for _ in range(4)} == {"10.0.0.1:5", "10.0.0.2:5"}


async def test_a_name_that_did_not_resolve_at_start_is_used_as_soon_as_it_does(monkeypatch):
    """A service started before its dependency's container (Compose, `kube play`) finds the
    dependency at its next call once the name resolves, not after gRPC's resolver backs off."""
    now = [0.0]
    known: dict[str, str] = {}

    def getaddrinfo(host, port, *args, **kwargs):
        if host not in known:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (known[host], port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    replicas = Endpoints(
        "embedding:50053", lambda a, authority: Channel(), name="embedding", clock=lambda: now[0]
    )
    assert [e.address for e in replicas.all] == ["dns:///embedding:50053"]

    now[0] += 0.3  # still unknown: a call tries again, and keeps gRPC's resolver meanwhile
    replicas.pick()
    await asyncio.sleep(0.1)
    assert [e.address for e in replicas.all] == ["dns:///embedding:50053"]

    known["embedding"] = "10.88.0.7"  # its container is up
    now[0] += 0.3  # well within the 5 s a resolved name waits
    replicas.pick()
    for _ in range(100):  # the lookup runs in the loop's executor
        if [e.address for e in replicas.all] == ["10.88.0.7:50053"]:
            break
        await asyncio.sleep(0.02)
    assert [e.address for e in replicas.all] == ["10.88.0.7:50053"]
    assert replicas.pick().address == "10.88.0.7:50053"
