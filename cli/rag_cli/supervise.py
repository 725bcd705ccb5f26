"""Keep `rag up`'s services running: one that exits is started again, with growing delays,
the way Kubernetes restarts a crashed container.

A crash of one service (killed for memory, a native library's segfault) then costs only
what that service does while it is down; the others keep answering through their fallbacks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from rag_cli.launcher import LocalCluster, health_status

POLL_S = 0.5  # how often the processes are looked at


@dataclass(frozen=True)
class RestartPolicy:
    """How long to wait before starting an exited service again."""

    first_delay_s: float = 1.0
    max_delay_s: float = 30.0
    # A service that ran this long before exiting starts again after the first delay:
    # it was not crash-looping.
    healthy_after_s: float = 60.0

    def delay(self, restarts_in_a_row: int) -> float:
        """The wait before restart number `restarts_in_a_row` (1 for the first) of a run
        of crashes: doubling from `first_delay_s` up to `max_delay_s`."""
        return min(self.max_delay_s, self.first_delay_s * 2 ** max(0, restarts_in_a_row - 1))


@dataclass
class _Record:
    started: float
    restarts_in_a_row: int = 0


async def keep_running(
    cluster: LocalCluster,
    report: Callable[[str], None],
    policy: RestartPolicy = RestartPolicy(),
) -> None:
    """Watch the cluster's processes until cancelled; restart each one that exits and
    report when it is SERVING again."""
    records = {name: _Record(time.monotonic()) for name in cluster.processes}
    restarting: dict[str, asyncio.Task] = {}
    try:
        while True:
            for name, process in list(cluster.processes.items()):
                if process.poll() is None or name in restarting:
                    continue
                record = records.setdefault(name, _Record(time.monotonic()))
                ran_s = time.monotonic() - record.started
                record.restarts_in_a_row = (
                    1 if ran_s >= policy.healthy_after_s else record.restarts_in_a_row + 1
                )
                delay = policy.delay(record.restarts_in_a_row)
                report(
                    f"{name} exited with {process.returncode} after {ran_s:.0f}s; "
                    f"starting it again in {delay:.1f}s"
                )
                task = asyncio.create_task(_restart(cluster, name, delay, record, report))
                restarting[name] = task
                task.add_done_callback(lambda _, name=name: restarting.pop(name, None))
            await asyncio.sleep(POLL_S)
    finally:
        tasks = list(restarting.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _restart(cluster: LocalCluster, name: str, delay: float, record: _Record, report) -> None:
    await asyncio.sleep(delay)
    try:
        cluster.start((name,))
    except RuntimeError as exc:  # its port taken meanwhile: the next poll tries again
        report(f"{name} not started: {exc}")
        return
    record.started = time.monotonic()
    process = cluster.processes[name]
    while process.poll() is None:
        if await health_status(cluster.address(name), 1.0, cluster.client_tls()) == "SERVING":
            report(f"{name} SERVING again after {time.monotonic() - record.started:.1f}s")
            return
        await asyncio.sleep(0.2)
