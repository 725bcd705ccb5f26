"""Start throwaway redis-server processes (a single server or a 3-master cluster) on free ports."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

from rag_cli.launcher import free_port, port_in_use


class RedisServer:
    """One redis-server on 127.0.0.1, persisting nothing, stopped by `stop()`."""

    def __init__(self, folder: Path, *, cluster: bool = False) -> None:
        # A cluster node also listens on port + 10000 (its bus), so both must be free.
        self.port = _free_cluster_port() if cluster else free_port()
        self.folder = folder / str(self.port)
        self.folder.mkdir(parents=True)
        self._cluster = cluster
        self._process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """redis://127.0.0.1:<port>/0"""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start and wait until it answers PING (at most 10 s)."""
        args = [
            shutil.which("redis-server") or "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.folder),
        ]
        if self._cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        self._process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if _cli(self.port, "ping").stdout.strip() == "PONG":
                return self
            time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def pause(self) -> None:
        """SIGSTOP: it hangs, still accepting connections."""
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after `pause`."""
        self._process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Stop it now (SIGKILL)."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None


def start_cluster(folder: Path, masters: int = 3) -> list[RedisServer]:
    """A real Redis Cluster of `masters` masters, slots assigned, ready for clients."""
    nodes: list[RedisServer] = []
    try:
        for _ in range(masters):
            nodes.append(RedisServer(folder, cluster=True).start())
        addresses = [f"127.0.0.1:{n.port}" for n in nodes]
        created = subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *addresses,
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if created.returncode != 0:
            raise RuntimeError(created.stdout + created.stderr)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if "cluster_state:ok" in _cli(nodes[0].port, "cluster", "info").stdout:
                return nodes
            time.sleep(0.1)
        raise RuntimeError("redis cluster did not become ready")
    except BaseException:
        for node in nodes:
            node.stop()
        raise


def _cli(port: int, *command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["redis-cli", "-p", str(port), *command], capture_output=True, text=True, timeout=5
    )


def _free_cluster_port() -> int:
    for _ in range(200):
        port = random.randint(20_000, 45_000)
        if not port_in_use(port) and not port_in_use(port + 10_000):
            return port
    raise RuntimeError("no free port pair for a cluster node")
