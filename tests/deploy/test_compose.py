"""deploy/compose.yaml brought up with podman-compose, used from the host through the one
published port with the `rag` CLI, then a container killed and one recreated."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rag_cli.launcher import free_port
from scripts import compose_secrets
from tests.deploy.containers import ROOT, build, podman, require_podman, wait_serving

pytestmark = pytest.mark.slow
RAG = str(Path(sys.executable).parent / "rag")
QUESTION = "How do I rotate the identity key?"
INGESTED = "docs/security.md"
PORTS = {"retrieval": 50052, "embedding": 50054, "generation": 50053, "query": 50051}


class Compose:
    """One project of deploy/compose.yaml, from a copy with its own secrets and port."""

    def __init__(self, folder: Path, images: dict[str, str]) -> None:
        shutil.copy(ROOT / "deploy" / "compose.yaml", folder / "compose.yaml")
        compose_secrets.main(folder / "secrets")
        self.folder = folder
        self.project = f"ragtest{os.getpid()}"
        self.port = free_port()
        self.api_key = (folder / "secrets" / "api-key").read_text()
        self.env = {
            **os.environ,
            "RAG_QUERY_PUBLISHED_PORT": str(self.port),
            "RAG_LIGHT_IMAGE": images["light"],
            "RAG_MODELS_IMAGE": images["models"],
            "RAG_REDIS_IMAGE": images["redis"],
        }

    def __call__(self, *args: str) -> str:
        command = ["podman-compose", "-p", self.project, "-f", str(self.folder / "compose.yaml")]
        done = subprocess.run(
            [*command, *args], env=self.env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done.stdout

    def container(self, service: str) -> str:
        """The name podman-compose gives the service's (one) container."""
        return f"{self.project}_{service}_1"

    def rag(self, *args: str) -> subprocess.CompletedProcess:
        """The CLI on the host, against the published query port."""
        target = ["--target", f"127.0.0.1:{self.port}", "--api-key", self.api_key]
        return subprocess.run(
            [RAG, *target, *args], capture_output=True, text=True, timeout=180, check=False
        )

    def answers(self, timeout_s: float = 180) -> str:
        """Ask until the suite answers with a source (services start in any order)."""
        deadline = time.monotonic() + timeout_s
        while True:
            done = self.rag("query", QUESTION)
            # A source from the ingested file: what the (small, local) model writes varies.
            if done.returncode == 0 and f"{INGESTED}#" in done.stdout:
                return done.stdout
            assert time.monotonic() < deadline, done.stdout[-2000:] + done.stderr[-2000:]
            time.sleep(2)


@pytest.fixture(scope="module")
def compose(tmp_path_factory):
    """The project, up; taken down with its volumes after the module."""
    require_podman()
    images = {target: build(target).name for target in ("light", "models", "redis")}
    project = Compose(tmp_path_factory.mktemp("compose"), images)
    project("up", "-d")
    for service, port in PORTS.items():
        wait_serving(project.container(service), port)
    yield project
    # The images' own VOLUMEs (/data where no named volume is mounted) are anonymous:
    # `down -v` leaves them.
    containers = [project.container(service) for service in [*PORTS, "redis"]]
    volumes = podman("inspect", "--format", "{{range .Mounts}}{{.Name}} {{end}}", *containers)
    project("down", "-v")
    for volume in volumes.split():
        podman("volume", "rm", "--force", volume, check=False)
    podman("network", "rm", f"{project.project}_rag", check=False)


def test_ingest_and_ask_through_the_one_published_port(compose):
    ingested = compose.rag("ingest", str(ROOT / INGESTED))
    assert ingested.returncode == 0, ingested.stdout + ingested.stderr
    answer = compose.answers()
    assert INGESTED in answer
    published = podman("port", compose.container("query"))
    assert published == f"50051/tcp -> 127.0.0.1:{compose.port}"
    for service in ("retrieval", "embedding", "generation", "redis"):
        assert podman("port", compose.container(service)) == "", service


def test_every_health_check_passes(compose):
    compose.answers()
    for service in ("query", "retrieval", "embedding", "generation", "redis"):
        podman("healthcheck", "run", compose.container(service))


def test_a_killed_container_is_restarted_and_answers_again(compose):
    compose.answers()
    container = compose.container("query")
    restarts = int(podman("inspect", "--format", "{{.RestartCount}}", container))
    pid = podman("inspect", "--format", "{{.State.Pid}}", container)
    subprocess.run(["kill", "-9", pid], check=True)
    deadline = time.monotonic() + 60
    while int(podman("inspect", "--format", "{{.RestartCount}}", container)) == restarts:
        assert time.monotonic() < deadline, "the killed container was not restarted"
        time.sleep(0.5)
    compose.answers()  # answers again, citing the ingested file


def test_documents_survive_recreating_the_retrieval_container(compose):
    compose.answers()
    container = compose.container("retrieval")
    before = podman("inspect", "--format", "{{.Id}}", container)
    compose("up", "-d", "--force-recreate", "retrieval")
    assert podman("inspect", "--format", "{{.Id}}", container) != before
    compose.answers()  # answers again, citing the ingested file
