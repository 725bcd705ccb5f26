"""The chart's rendered objects run by `podman kube play`: its ConfigMaps, Deployments and
the retrieval StatefulSet's pod, with a Secret in podman's store, and a question asked.

So the settings names, commands, volumes and securityContext run for real, not only pass a
schema check. What podman 4.3 cannot run is left out or changed, and the test says so:
Services, probes, NetworkPolicies, PodDisruptionBudgets, autoscalers, the ServiceAccount and
the helm test Pod are dropped; the StatefulSet runs as a Deployment of one pod whose volume
claim template becomes a claim (a podman volume); one pod per Deployment is started; TLS is
off (its Secret would need cert-manager), so is Redis (none in the chart); and the services'
targets name the pods (`rag-embedding-pod-0`) where the chart names the Services.
"""

from __future__ import annotations

import base64
import json
import re
import time

import pytest
import yaml

from tests.deploy.containers import build, podman, require_podman, wait_serving
from tests.deploy.test_chart import of_kind, render

pytestmark = pytest.mark.slow
API_KEY = "kube-play-key"
PORTS = {"query": 50051, "retrieval": 50052, "generation": 50053, "embedding": 50054}
NOTE = "Kelp forests grow up to half a metre a day in the cold waters off the northern coast."


def playable(images: dict[str, str]) -> list[dict]:
    """The default chart's objects, as far as podman kube play runs them."""
    values = {
        "tls": {"enabled": False},
        "redis": {"url": ""},
        "existingSecret": "rag-secrets",
        "query": {"replicas": 1, "autoscaling": {"enabled": False}},
        "image": {
            kind: dict(zip(("repository", "tag"), images[kind].rsplit(":", 1), strict=True))
            for kind in ("light", "models")
        },
    }
    objects = render(values)
    for config in of_kind(objects, "ConfigMap"):
        for name, value in config["data"].items():
            if name.endswith("_TARGET"):  # Services do not exist here; pods have names
                config["data"][name] = re.sub(r"^dns:///([\w-]+)\.[^:]+", r"dns:///\1-pod-0", value)
    for stateful in of_kind(objects, "StatefulSet"):
        stateful["kind"] = "Deployment"
        spec = stateful["spec"]
        for claim in spec.pop("volumeClaimTemplates"):
            volume = {"persistentVolumeClaim": {"claimName": "rag-kube-play-data"}}
            spec["template"]["spec"]["volumes"].append(
                {"name": claim["metadata"]["name"], **volume}
            )
        spec.pop("serviceName")
    return of_kind(objects, "ConfigMap") + of_kind(objects, "Deployment")


@pytest.fixture(scope="module")
def played(tmp_path_factory):
    """The pods, up; down and their volume and secret removed after the module."""
    require_podman()
    images = {target: build(target).name for target in ("light", "models")}
    folder = tmp_path_factory.mktemp("kube")
    manifest = folder / "rag.yaml"
    manifest.write_text(yaml.safe_dump_all(playable(images)))
    # podman reads a secretKeyRef from its own store: a JSON map of base64 values.
    secret = {
        "RAG_IDENTITY_KEY": "kube-play-identity-key-" + "k" * 32,
        "RAG_QUERY_API_KEYS": json.dumps({API_KEY: {"tenant": "kube", "roles": ["admin"]}}),
    }
    (folder / "secret.json").write_text(
        json.dumps({k: base64.b64encode(v.encode()).decode() for k, v in secret.items()})
    )
    network = "ragkubeplay"
    podman("network", "rm", "--force", network, check=False)
    podman("network", "create", network)
    podman("secret", "create", "rag-secrets", str(folder / "secret.json"))
    try:
        podman("kube", "play", "--network", network, str(manifest), timeout=300)
        for service, port in PORTS.items():
            wait_serving(f"rag-{service}-pod-0-{service}", port)
        yield
    finally:
        podman("kube", "down", str(manifest), check=False)
        podman("volume", "rm", "--force", "rag-kube-play-data", check=False)
        podman("secret", "rm", "rag-secrets", check=False)
        podman("network", "rm", network, check=False)


def test_the_chart_s_pods_run_as_rendered_and_answer_a_question(played):
    query = "rag-query-pod-0-query"
    assert podman("exec", query, "id", "-u") == "10001"
    configured = podman("exec", query, "sh", "-c", "env | grep -c '^RAG_QUERY_'")
    assert int(configured) >= 20  # the ConfigMap's settings reached the process
    podman("exec", query, "sh", "-c", f"echo '{NOTE}' > /tmp/kelp.txt")  # /tmp: an emptyDir
    cli = ["exec", query, "rag", "--target", "127.0.0.1:50051", "--api-key", API_KEY]
    # The query pod starts first: until podman's DNS answers for retrieval's pod name (it
    # may keep denying a name it denied before the pod existed), the ingest is refused.
    deadline = time.monotonic() + 90
    # "ingested 1 files", not "stored 0 of 1 files before the error".
    while "ingested 1 files" not in (
        stored := podman(*cli, "ingest", "/tmp/kelp.txt", check=False)
    ):
        assert time.monotonic() < deadline, stored
        time.sleep(2)
    question = (*cli, "query", "How fast do kelp forests grow?")
    while "kelp.txt" not in (answer := podman(*question, check=False)):  # its source
        assert time.monotonic() < deadline, answer
        time.sleep(2)
    assert "provider " in answer  # an answer was written (the model's words vary)
