"""Calls that answer without a key hold a bounded share of a server's slots."""

from __future__ import annotations

import pytest

from rag_common.errors import ResourceExhausted
from rag_common.server.keyless import KeylessShare


def test_keyless_calls_get_an_eighth_of_the_slots_and_a_few_per_address():
    share = KeylessShare(256)
    held = [share.take(f"ipv4:10.0.0.{n // 8}:{40000 + n}") for n in range(32)]
    with pytest.raises(ResourceExhausted) as refused:  # 32 of 256: the rest stay for keys
        share.take("ipv4:10.0.0.99:1")
    assert refused.value.reason == "KEYLESS_CALLS"
    held.pop()()
    share.take("ipv4:10.0.0.99:1")  # a slot given back is taken again


def test_one_address_holds_at_most_eight_whatever_its_ports():
    share = KeylessShare(256)
    for port in range(8):
        share.take(f"ipv6:[::1]:{port}")
    with pytest.raises(ResourceExhausted):
        share.take("ipv6:[::1]:9")
    give_back = share.take("ipv4:127.0.0.1:9")  # another address still may
    give_back()
    give_back()  # given back once only, however often called
    assert share.in_flight == 8
