"""The container image, checked without a container engine (none runs on these machines).

hadolint lints the Dockerfile; every file it copies must exist and pass the .dockerignore;
and the light target is built the way the Dockerfile builds it, from only the files it
copies, into a fresh virtual environment whose `rag serve` must bring query and retrieval
to SERVING without any model library installed.
"""

from __future__ import annotations

import fnmatch
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rag_cli.launcher import free_port

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
MODEL_LIBRARIES = ("torch", "sentence_transformers", "llama_cpp", "transformers")


def copied_sources() -> list[str]:
    """Paths the Dockerfile copies from the build context (not --from another stage)."""
    sources = []
    for line in DOCKERFILE.read_text().splitlines():
        words = shlex.split(line) if line.startswith("COPY ") else []
        if words and not any(w.startswith("--from") for w in words):
            sources += [w for w in words[1:-1] if not w.startswith("--")]
    return sources


def admitted(path: str) -> bool:
    """Whether .dockerignore lets `path` into the build context (last matching rule wins)."""
    verdict = True
    for rule in (ROOT / ".dockerignore").read_text().splitlines():
        rule = rule.strip()
        if not rule or rule.startswith("#"):
            continue
        negated = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
            verdict = negated
    return verdict


def test_hadolint_finds_nothing():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_copied_file_exists_and_is_in_the_build_context():
    sources = copied_sources()
    assert "pyproject.toml" in sources and "services" in sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert admitted(source), f"{source} is excluded by .dockerignore"


def wait_serving(process: subprocess.Popen, port: int, python: Path) -> None:
    probe = (
        "import grpc,sys;from grpc_health.v1 import health_pb2 as h,health_pb2_grpc as g;"
        f"c=grpc.insecure_channel('127.0.0.1:{port}');"
        "r=g.HealthStub(c).Check(h.HealthCheckRequest(),timeout=1);"
        "sys.exit(0 if r.status==h.HealthCheckResponse.SERVING else 1)"
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "the service exited"
        if subprocess.run([str(python), "-c", probe], capture_output=True).returncode == 0:
            return
        time.sleep(0.3)
    raise AssertionError("not SERVING")


@pytest.mark.slow
def test_the_light_target_builds_from_what_it_copies_and_serves_without_model_libraries(
    tmp_path,
):
    context = tmp_path / "src"
    for source in copied_sources():
        target = context / source
        target.parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / source, target)
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    constraints = ["--constraint", "deploy/docker/constraints.txt"]
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "-q", *constraints, "grpcio-tools"],
        ["bash", "scripts/gen_proto.sh"],
        [str(python), "-m", "pip", "install", "-q", *constraints, "."],
    ]
    env = {**os.environ, "PYTHON": str(python), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    for step in steps:
        done = subprocess.run(step, cwd=context, env=env, capture_output=True, text=True)
        assert done.returncode == 0, (step, done.stdout[-2000:], done.stderr[-2000:])
    for library in MODEL_LIBRARIES:
        found = subprocess.run([str(python), "-c", f"import {library}"], capture_output=True)
        assert found.returncode != 0, f"{library} is installed in the light image"
    for service in ("retrieval", "query"):
        port = free_port()
        service_env = {
            **env,
            f"RAG_{service.upper()}_PORT": str(port),
            "RAG_RETRIEVAL_DATA_DIR": str(tmp_path / "data"),
        }
        process = subprocess.Popen(
            [str(venv / "bin" / "rag"), "serve", service],
            cwd=tmp_path,
            env=service_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_serving(process, port, python)
        finally:
            process.terminate()
            assert process.wait(timeout=30) == 0
