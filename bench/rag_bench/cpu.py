"""CPU time the suite's processes spend per request, read from /proc: where a cache miss's
cost goes when the machine, not any one stage, is the limit."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of every thread of process `pid` so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Fields after the command name, which is in parentheses and may hold spaces.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


@contextlib.contextmanager
def per_request(pids: Mapping[str, int], requests: int, into: dict[str, float]) -> Iterator[None]:
    """Fill `into` with each named process's CPU milliseconds per request over the block."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    yield
    for name, pid in pids.items():
        into[name] = (cpu_seconds(pid) - before[name]) * 1000 / requests
