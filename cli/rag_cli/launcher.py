"""Start the four services as separate local processes and stop them cleanly."""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rag_common.security.credentials import Credentials
from rag_common.security.tls import TlsFiles, write_development_ca
from rag_common.settings import ServiceSettings

SERVICES = ("embedding", "retrieval", "generation", "query")
DEFAULT_PORTS = {"query": 50051, "retrieval": 50052, "generation": 50053, "embedding": 50054}
# Each process's Prometheus endpoint (what `rag advise` reads).
DEFAULT_METRICS_PORTS = {"query": 9464, "retrieval": 9465, "generation": 9466, "embedding": 9467}
DEV_API_KEY = "dev-key"
DEV_API_KEYS = {
    DEV_API_KEY: {"tenant": "default", "roles": ["admin", "operator"], "principal": "dev"}
}


def base_service(name: str) -> str:
    """The service a process name stands for: `retrieval#2` is a retrieval replica."""
    return name.split("#")[0]


def port_in_use(port: int) -> bool:
    """Whether something already listens on 127.0.0.1:`port`."""
    with socket.socket() as sock:
        # As gRPC servers do: connections of a stopped server lingering in TIME_WAIT do not
        # block the port, a live listener still does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def port_holder(port: int) -> str:
    """Who listens on `port` ("pid 123: python -m rag_query"), as far as /proc tells."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # fields: sl, local address (hex ip:port), remote, state (0A = LISTEN), ..., inode
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
                return f"pid {proc.name}: {command}"
        except OSError:
            continue
    return "unknown process"


# Set for each service process: the launcher's pid, which `die_with_launcher` follows.
LAUNCHER_PID_ENV = "RAG_LAUNCHER_PID"


def die_with_launcher() -> None:
    """In a service the launcher started: get SIGTERM when the launcher dies, even by SIGKILL.

    Done by the service itself, not in the child between fork and exec: code run there
    makes Python fork instead of vfork, and gRPC's fork handlers in the forked child can
    abort it before it execs (its poller meets a closed epoll descriptor).
    """
    launcher = os.environ.pop(LAUNCHER_PID_ENV, "")
    if not launcher:
        return
    PR_SET_PDEATHSIG = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the launcher's own handlers still stop us
        return
    if os.getppid() != int(launcher):  # the launcher died before the signal was asked for
        os.kill(os.getpid(), signal.SIGTERM)


def local_identity_key(data_dir: Path) -> str:
    """The key a local cluster signs internal calls with, kept in its data folder.

    Made once (readable by its owner only), so every process `rag up` starts, and commands
    like `rag backup` run beside it, share it without anyone configuring one.
    """
    path = data_dir / "identity.key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32))
    return path.read_text().strip()


_LOWEST_PORT = 10_000
_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, and that this process has not
    handed out before.

    It lies below the kernel's ephemeral range: a port taken from that range (as binding
    port 0 does) is free only until the next outgoing connection, which may get it as its
    local port before the service that was given it binds it.
    """
    below = _ephemeral_ports_start()
    for _ in range(200):
        port = random.randrange(_LOWEST_PORT, below) if below > _LOWEST_PORT + 1000 else 0
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # taken
            port = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError("no free port found")


def _ephemeral_ports_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0  # unknown: let the kernel choose


def client_channel(address: str, tls: TlsFiles | None = None) -> grpc.aio.Channel:
    """A channel from the command line: TLS with `tls`, or with the RAG_TLS_* files when
    they are set (the certificate is also the client certificate internal ports ask for),
    else plaintext."""
    tls = tls or TlsFiles.from_settings(ServiceSettings())
    if tls is None:
        return grpc.aio.insecure_channel(address)
    return grpc.aio.secure_channel(address, tls.channel_credentials())


async def health_status(
    address: str, call_timeout_s: float = 1.0, tls: TlsFiles | None = None
) -> str:
    """The standard health status of a server ('SERVING', 'NOT_SERVING', 'UNREACHABLE')."""
    async with client_channel(address, tls) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            request = health_pb2.HealthCheckRequest(service="")
            reply = await stub.Check(request, timeout=call_timeout_s)
        except grpc.aio.AioRpcError:
            return "UNREACHABLE"
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


@dataclass
class LocalCluster:
    """The four services on localhost, each its own process with its own log file."""

    data_dir: Path
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    metrics_ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_METRICS_PORTS))
    env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    # Settings of one process only (a replica's metrics port, say), over `env`.
    process_env: dict[str, dict[str, str]] = field(default_factory=dict)
    # Certificates from `use_tls()`: every port TLS, internal ones mTLS.
    tls_dir: Path | None = None

    @classmethod
    def on_free_ports(cls, data_dir: Path, env: dict[str, str] | None = None) -> LocalCluster:
        """A cluster whose services listen on ports that are free now (for tests, benches)."""
        return cls(
            data_dir,
            {name: free_port() for name in SERVICES},
            {name: free_port() for name in SERVICES},
            dict(env or {}),
        )

    def use_tls(self) -> TlsFiles:
        """Serve every port over TLS (mTLS between services) with a development CA in
        `<data_dir>/tls`, made if missing; returns the files a client (`cli`) calls with."""
        self.tls_dir = self.data_dir / "tls"
        if not (self.tls_dir / "ca.pem").exists():
            write_development_ca(self.tls_dir, [*SERVICES, "cli"], ["localhost", "127.0.0.1"])
        return self.client_tls()

    def client_tls(self) -> TlsFiles | None:
        """The files a client of this cluster calls with (None without TLS)."""
        if self.tls_dir is None:
            return None
        return TlsFiles(*(path.read_bytes() for path in self.tls_paths("cli")))

    def tls_paths(self, name: str) -> tuple[Path, Path, Path]:
        """Certificate, key and CA files of `name` (a service, or `cli`)."""
        folder = self.tls_dir
        return folder / f"{name}.pem", folder / f"{name}-key.pem", folder / "ca.pem"

    def credentials(self, service: str = "tests") -> Credentials:
        """Credentials signed with this cluster's key, for calls straight to its services."""
        return Credentials(
            self.service_env("query")["RAG_IDENTITY_KEY"], service, self.client_tls()
        )

    def address(self, service: str) -> str:
        """host:port of a service."""
        return f"127.0.0.1:{self.ports[service]}"

    @property
    def log_dir(self) -> Path:
        """Where each service's log file is written."""
        return self.data_dir / "logs"

    def add_replica(self, service: str) -> str:
        """Name (`service#n`) and a free port for one more replica of `service`."""
        count = sum(1 for name in self.ports if base_service(name) == service)
        name = f"{service}#{count + 1}"
        self.ports[name] = free_port()
        self.metrics_ports[name] = free_port()
        return name

    def metrics_url(self, service: str) -> str:
        """The /metrics address of a service (or replica)."""
        return f"http://127.0.0.1:{self.metrics_ports[service]}/metrics"

    def service_env(self, service: str) -> dict[str, str]:
        """The environment a service (or replica: `service#n`) process starts with."""
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        env.setdefault("RAG_QUERY_API_KEYS", json.dumps(DEV_API_KEYS))
        env.setdefault("RAG_IDENTITY_KEY", local_identity_key(self.data_dir))
        env.update(
            {
                "RAG_EMBEDDING_PORT": str(self.ports["embedding"]),
                "RAG_RETRIEVAL_PORT": str(self.ports["retrieval"]),
                "RAG_GENERATION_PORT": str(self.ports["generation"]),
                "RAG_QUERY_PORT": str(self.ports["query"]),
                "RAG_RETRIEVAL_EMBEDDING_TARGET": self.address("embedding"),
                "RAG_RETRIEVAL_DATA_DIR": str(self.data_dir),
                "RAG_QUERY_EMBEDDING_TARGET": self.address("embedding"),
                "RAG_QUERY_RETRIEVAL_TARGET": self.address("retrieval"),
                "RAG_QUERY_GENERATION_TARGET": self.address("generation"),
            }
        )
        env.update(self.env)
        base = base_service(service).upper()
        env[f"RAG_{base}_METRICS_PORT"] = str(self.metrics_ports[service])
        if self.tls_dir is not None:
            cert, key, ca = self.tls_paths(base_service(service))
            env |= {"RAG_TLS_CERT_FILE": str(cert), "RAG_TLS_KEY_FILE": str(key)}
            env["RAG_TLS_CA_FILE"] = str(ca)
        if "#" in service:  # a replica: its own port and, for embedded stores, its own folder
            env[f"RAG_{base}_PORT"] = str(self.ports[service])
            env[f"RAG_{base}_DATA_DIR"] = str(self.data_dir / service.replace("#", "-"))
        env.update(self.process_env.get(service, {}))
        env[LAUNCHER_PID_ENV] = str(os.getpid())
        return env

    def start(self, services: tuple[str, ...] = SERVICES) -> None:
        """Start the given services (all four by default)."""
        busy = [
            f"{s} ({self.ports[s]}, held by {port_holder(self.ports[s])})"
            for s in services
            if port_in_use(self.ports[s])
        ]
        if busy:
            # Otherwise an old process would answer the health checks in the new one's place.
            raise RuntimeError(f"ports already in use: {'; '.join(busy)}. Is rag already up?")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for service in services:
            log_file = open(self.log_dir / f"{service}.log", "ab")
            self.processes[service] = subprocess.Popen(
                [sys.executable, "-m", "rag_cli", "serve", base_service(service)],
                env=self.service_env(service),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the launcher only; it stops children
            )
            log_file.close()

    async def wait_serving(self, within_s: float = 300.0) -> dict[str, float]:
        """Wait until every started service reports SERVING; returns seconds each took."""
        started = time.monotonic()
        ready: dict[str, float] = {}
        while len(ready) < len(self.processes):
            for service, process in self.processes.items():
                if service in ready:
                    continue
                if process.poll() is not None:
                    raise RuntimeError(
                        f"{service} exited with {process.returncode}; see "
                        f"{self.log_dir / (service + '.log')}"
                    )
                status = await health_status(self.address(service), 0.5, self.client_tls())
                if status == "SERVING":
                    ready[service] = time.monotonic() - started
            if time.monotonic() - started > within_s:
                missing = sorted(set(self.processes) - set(ready))
                raise TimeoutError(f"not serving after {within_s:.0f}s: {', '.join(missing)}")
            await asyncio.sleep(0.2)
        return ready

    def stop(self, services: tuple[str, ...] | None = None, grace: float = 15.0) -> None:
        """Stop services callers first: each finishes its calls in flight before what it calls
        goes away. SIGTERM (graceful), then SIGKILL after `grace` seconds."""
        names = [s for s in (services or tuple(self.processes)) if s in self.processes]
        for layer in _STOP_ORDER:
            self._stop_layer([n for n in names if base_service(n) in layer], grace)

    def kill(self, services: tuple[str, ...]) -> None:
        """SIGKILL: the processes end at once, calls in flight and all (a crash)."""
        for name in services:
            process = self.processes.pop(name)
            process.kill()
            process.wait()

    def pause(self, services: tuple[str, ...]) -> None:
        """SIGSTOP: the processes hang, their ports still accepting connections."""
        for name in services:
            self.processes[name].send_signal(signal.SIGSTOP)

    def resume(self, services: tuple[str, ...]) -> None:
        """SIGCONT after `pause`."""
        for name in services:
            self.processes[name].send_signal(signal.SIGCONT)

    def _stop_layer(self, names: list[str], grace: float) -> None:
        for name in names:
            if self.processes[name].poll() is None:
                self.processes[name].send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for name in names:
            process = self.processes.pop(name)
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# Callers before callees, so a call in flight never loses the service it is waiting on.
_STOP_ORDER = (("query",), ("retrieval", "generation"), ("embedding",))
