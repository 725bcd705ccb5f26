"""The images, built with podman and run as containers.

hadolint lints the Dockerfile; every file it copies must exist and pass the .dockerignore.
Then both targets are built (scripts/build_images.sh, from a base made of Debian's packages)
and each service is started from its image the way a cluster runs it: uid 10001, a read-only
root filesystem and no network at all, so anything it tried to download would fail. The
build times, sizes and cold starts to SERVING are printed (`pytest -s`).
"""

from __future__ import annotations

import fnmatch
import shlex
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.deploy.containers import (
    IDENTITY_KEY,
    PODMAN,
    ROOT,
    Image,
    build,
    podman,
    require_podman,
    wait_serving,
)

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


PORTS = {"query": 50051, "retrieval": 50052, "generation": 50053, "embedding": 50054}


@pytest.fixture(scope="module")
def images() -> dict[str, Image]:
    """Both targets, built once for the module."""
    require_podman()
    built = {target: build(target) for target in ("light", "models")}
    for target, image in built.items():
        print(f"\n{target}: {image.name} {image.size_mb:.0f} MB, built in {image.build_s:.0f} s")
    return built


@pytest.fixture
def start(request):
    """Start `rag serve <service>` from an image as a cluster would, with no network."""
    started: list[str] = []

    def run(image: Image, service: str) -> str:
        name = f"rag-test-{service}-{len(started)}-{request.node.name[:20]}".replace("_", "-")
        podman("rm", "-f", "-v", name, check=False)
        podman(
            "run", "--detach", "--name", name, "--read-only", "--network", "none",
            "--tmpfs", "/tmp", "--env", f"RAG_IDENTITY_KEY={IDENTITY_KEY}",
            image.name, service,
        )  # fmt: skip
        started.append(name)
        return name

    yield run
    for name in started:
        podman("rm", "-f", "-v", "--time", "2", name, check=False)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("target", "service"),
    [("light", "query"), ("light", "retrieval"), ("models", "embedding"), ("models", "generation")],
)
def test_each_service_serves_from_its_image_as_uid_10001_read_only_without_a_network(
    images, start, target, service
):
    container = start(images[target], service)
    cold_start = wait_serving(container, PORTS[service])
    print(f"\n{service}: SERVING {cold_start:.1f} s after start ({target} image)")
    assert podman("exec", container, "id", "-u") == "10001"
    write = subprocess.run(
        [*PODMAN, "exec", container, "touch", "/opt/venv/written"], capture_output=True
    )
    assert write.returncode != 0 and b"Read-only file system" in write.stderr
    # The embedding model was exported and the local model re-encoded at build time.
    assert "exporting the model" not in podman("logs", container)


@pytest.mark.slow
def test_no_model_library_in_the_light_image_and_no_torch_in_the_models_image(images):
    def importable(image: Image, modules: list[str]) -> list[str]:
        code = "import importlib.util as u,sys;print(*[m for m in sys.argv[1:] if u.find_spec(m)])"
        found = podman("run", "--rm", "--network", "none", "--entrypoint", "python",
                       image.name, "-c", code, *modules)  # fmt: skip
        return found.split()

    assert importable(images["light"], list(MODEL_LIBRARIES)) == []
    assert importable(images["models"], list(MODEL_LIBRARIES)) == ["llama_cpp"]
    assert importable(images["models"], ["onnxruntime", "tokenizers"]) == [
        "onnxruntime",
        "tokenizers",
    ]


@pytest.mark.slow
def test_no_build_secret_is_left_in_any_layer(images, tmp_path):
    """pip's settings and CA bundle reach the build as secrets: no file of the image holds
    them, and the image's history does not name them."""
    for image in images.values():
        container = podman("create", image.name)
        try:
            archive = tmp_path / "fs.tar"
            podman("export", "--output", str(archive), container, timeout=300)
            with tarfile.open(archive) as tar:
                names = tar.getnames()
        finally:
            podman("rm", "-v", container)
        assert not [n for n in names if n.endswith(("pip.conf", "pip-ca", "secrets/pip"))]
        assert len(names) > 1000  # the listing is the image's whole filesystem
        history = podman("history", "--no-trunc", "--format", "{{.CreatedBy}}", image.name)
        assert "pip-ca" not in history and "find-links" not in history
