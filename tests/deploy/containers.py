"""Podman for the container tests: the engine's command line, image builds and probes."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Set up by scripts/install_podman.sh (runc, cgroupfs, no default ulimits).
PODMAN = ["podman"]
IDENTITY_KEY = "container-tests-identity-key-0123456789abcdef"


def require_podman() -> None:
    """Skip without podman and its tools, unless RAG_REQUIRE_CONTAINERS says CI must run."""
    tools = ("podman", "mmdebstrap", "podman-compose")
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if not missing:
        return
    reason = f"{', '.join(missing)} not installed: run scripts/install_podman.sh"
    if os.environ.get("RAG_REQUIRE_CONTAINERS") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def podman(*args: str, check: bool = True, timeout: float = 120) -> str:
    """Run one podman command; its stdout, stripped."""
    done = subprocess.run(
        [*PODMAN, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done.stdout.strip()


@dataclass(frozen=True)
class Image:
    """A built image: its name, how long the build took and its size."""

    name: str
    build_s: float
    size_mb: float


def build(target: str, **env: str) -> Image:
    """Build one target of scripts/build_images.sh (layers cached by podman between runs)."""
    started = time.monotonic()
    done = subprocess.run(
        ["scripts/build_images.sh", target],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    name = done.stdout.split()[-1]
    size = int(podman("image", "inspect", "--format", "{{.Size}}", name))
    return Image(name, time.monotonic() - started, size / 1e6)


def wait_serving(container: str, port: int, timeout_s: float = 120) -> float:
    """Seconds until the container's own `rag probe` says SERVING (asked from inside, so a
    container without a network can be probed)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        state = podman("inspect", "--format", "{{.State.Status}}", container)
        assert state == "running", f"{container} is {state}: {logs(container)}"
        probe = subprocess.run(
            [*PODMAN, "exec", container, "rag", "probe", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0:
            return time.monotonic() - started
        time.sleep(0.25)
    raise AssertionError(f"{container} not SERVING after {timeout_s} s: {logs(container)}")


def logs(container: str) -> str:
    """The container's last log lines."""
    return podman("logs", "--tail", "30", container, check=False)
