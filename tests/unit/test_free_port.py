"""Ports picked for test and bench services cannot be taken by an outgoing connection first."""

from __future__ import annotations

import socket
from pathlib import Path

from rag_cli.launcher import free_port


def test_free_ports_lie_below_the_ephemeral_range_and_are_never_repeated():
    ephemeral_start = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    assert all(port < ephemeral_start for port in ports)
    for port in ports[:5]:  # and each can be bound
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
