"""`rag up` never leaves its services behind: not on SIGTERM or SIGHUP, not when killed; and
it starts again a service that crashes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rag_cli.launcher import DEFAULT_PORTS, LocalCluster, health_status, port_in_use
from rag_cli.supervise import RestartPolicy, keep_running

pytestmark = pytest.mark.slow


def launch(tmp_path) -> subprocess.Popen:
    """`rag up` on the default ports, with a provider that needs no model (fast start)."""
    if any(port_in_use(port) for port in DEFAULT_PORTS.values()):
        pytest.skip("the default ports are taken on this machine")
    env = {**os.environ, "RAG_GENERATION_PROVIDERS": '["extractive"]'}
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "rag"), "--data-dir", str(tmp_path), "up"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def wait_all_serving(launcher: subprocess.Popen, within_s: float = 180) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        assert launcher.poll() is None, "rag up exited while starting"
        states = [await health_status(f"127.0.0.1:{p}", 0.5) for p in DEFAULT_PORTS.values()]
        if all(state == "SERVING" for state in states):
            return
        await asyncio.sleep(0.2)
    raise AssertionError("services not serving")


def wait_ports_free(within_s: float) -> list[int]:
    """Ports still held after `within_s` seconds."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        held = [port for port in DEFAULT_PORTS.values() if port_in_use(port)]
        if not held:
            return []
        time.sleep(0.1)
    return held


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGHUP])
async def test_a_signal_to_rag_up_stops_every_service(tmp_path, stop_signal):
    launcher = launch(tmp_path)
    try:
        await wait_all_serving(launcher)
        launcher.send_signal(stop_signal)
        assert launcher.wait(timeout=60) == 0
        assert wait_ports_free(5) == []
    finally:
        launcher.kill()


async def test_a_killed_rag_up_takes_its_services_with_it(tmp_path):
    launcher = launch(tmp_path)
    try:
        await wait_all_serving(launcher)
        launcher.kill()  # no handler runs: the services learn of it from the kernel
        launcher.wait()
        # Each service stops gracefully on its own (grace period 10 s by default).
        assert wait_ports_free(20) == []
    finally:
        launcher.kill()


def test_a_port_taken_by_someone_else_is_named_with_its_holder(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import socket,time; s=socket.socket(); "
            "s.bind(('127.0.0.1', 0)); s.listen(); print(s.getsockname()[1], flush=True); "
            "time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(holder.stdout.readline())
        cluster = LocalCluster(tmp_path, ports={"query": port})
        with pytest.raises(RuntimeError, match=rf"query \({port}, held by pid {holder.pid}:"):
            cluster.start(("query",))
    finally:
        holder.kill()
        holder.wait()


async def wait_for_report(reports: list[str], text: str, count: int, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while sum(text in line for line in reports) < count:
        assert time.monotonic() < deadline, f"no {count}x {text!r} in {reports}"
        await asyncio.sleep(0.1)


async def test_a_service_killed_outright_is_started_again_with_growing_delays(tmp_path):
    cluster = LocalCluster.on_free_ports(
        tmp_path, env={"RAG_GENERATION_PROVIDERS": '["extractive"]'}
    )
    cluster.start(("generation",))
    reports: list[str] = []
    watcher = None
    try:
        await cluster.wait_serving(within_s=120)
        policy = RestartPolicy(first_delay_s=0.2, healthy_after_s=600)
        watcher = asyncio.create_task(keep_running(cluster, reports.append, policy))
        crashed = cluster.processes["generation"].pid
        os.kill(crashed, signal.SIGKILL)
        await wait_for_report(reports, "SERVING again", 1, within_s=120)
        assert reports[0].startswith("generation exited with -9")
        assert reports[0].endswith("starting it again in 0.2s")
        assert cluster.processes["generation"].pid != crashed
        assert await health_status(cluster.address("generation"), 2.0) == "SERVING"

        # A second crash soon after the first waits twice as long: a crash loop backs off.
        os.kill(cluster.processes["generation"].pid, signal.SIGKILL)
        await wait_for_report(reports, "SERVING again", 2, within_s=120)
        assert reports[2].endswith("starting it again in 0.4s")
    finally:
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        cluster.stop()
