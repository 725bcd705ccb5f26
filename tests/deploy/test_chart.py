"""The Helm chart, rendered offline with several values files and checked as a reviewer would.

Everything the chart must agree with is read from the code, so the two cannot drift: the
settings each service reads (names in ConfigMaps and Secrets), its default port, the
services it calls (its `*_target` settings, which the NetworkPolicies must allow exactly),
and the metric names the autoscalers read.
"""

from __future__ import annotations

from pathlib import Path

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from rag_common.settings import env_name
from rag_common.telemetry.metrics import RpcMetrics
from rag_embedding.config import EmbeddingSettings
from rag_generation.config import GenerationSettings
from rag_query.config import QuerySettings
from rag_retrieval.config import RetrievalSettings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "rag"
KUBE_VERSION = "1.30.0"
SETTINGS = {
    "query": QuerySettings,
    "retrieval": RetrievalSettings,
    "generation": GenerationSettings,
    "embedding": EmbeddingSettings,
}
VALUES_FILES = {
    "default": None,  # the chart's defaults and the one value they require
    "production": CHART / "values-production.yaml",
    "minimal": Path(__file__).with_name("values-minimal.yaml"),
}
# Not in the Kubernetes schemas; checked by the tests (test_monitoring.py for the last two).
CUSTOM_RESOURCES = {"ScaledObject", "ServiceMonitor", "PrometheusRule"}


# What every install must set beside the defaults: the TLS Secret, and a Redis for the
# query replicas to share corpus versions through.
REQUIRED = {"tls": {"secretName": "rag-tls"}, "redis": {"url": "redis://rag-redis:6379/0"}}


def values_of(name: str) -> dict:
    path = VALUES_FILES[name]
    return yaml.safe_load(path.read_text()) if path else dict(REQUIRED)


def render(values: dict | None = None) -> list[dict]:
    """Every object the chart renders with these values, as a release `rag` in `prod`, with
    the values every install must set (REQUIRED) unless they are given."""
    values = REQUIRED | (values or {})
    chart = helm.Chart.load(str(CHART))
    manifests = chart.render(values, name="rag", namespace="prod")
    return [
        doc
        for path, text in manifests.items()
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def of_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def component(obj: dict) -> str:
    return obj["metadata"]["labels"]["app.kubernetes.io/component"]


def pod_specs(objects: list[dict]) -> dict[str, dict]:
    """Pod spec of each workload (and of the test and backup pods), by component."""
    specs = {}
    for obj in objects:
        if obj["kind"] in ("Deployment", "StatefulSet"):
            specs[component(obj)] = obj["spec"]["template"]["spec"]
        elif obj["kind"] == "Pod":
            specs[component(obj)] = obj["spec"]
        elif obj["kind"] == "CronJob":
            specs[component(obj)] = obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return specs


def setting_names(service: str) -> set[str]:
    """The variables a service reads."""
    cls = SETTINGS[service]
    return {env_name(cls, name) for name in cls.model_fields}


def callees(service: str) -> set[str]:
    """The services `service` calls: the ones it has a `<name>_target` setting for."""
    return {
        name.removesuffix("_target")
        for name in SETTINGS[service].model_fields
        if name.endswith("_target")
    }


@pytest.mark.parametrize("values", VALUES_FILES)
def test_lints_clean_and_every_object_is_valid_kubernetes(values):
    report = helm.lint(str(CHART), values_of(values), strict=True)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not report["errors"] and not problems, report
    for obj in render(values_of(values)):
        if obj["kind"] not in CUSTOM_RESOURCES:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


@pytest.mark.parametrize("values", VALUES_FILES)
def test_every_setting_the_chart_sets_is_one_the_service_reads(values):
    objects = render(values_of(values))
    for config_map in of_kind(objects, "ConfigMap"):
        service = component(config_map)
        if service == "metrics":  # the Grafana dashboard, not settings
            continue
        unknown = set(config_map["data"]) - setting_names(service)
        assert not unknown, (service, unknown)
    for service, spec in pod_specs(objects).items():
        if service in SETTINGS:
            [container] = spec["containers"]
            unknown = {e["name"] for e in container.get("env", [])} - setting_names(service)
            assert not unknown, (service, unknown)


def test_ports_are_the_services_own_defaults():
    objects = render()
    for service, spec in pod_specs(objects).items():
        if service in SETTINGS:
            [container] = spec["containers"]
            port = SETTINGS[service].model_fields["port"].default
            assert container["ports"][0]["containerPort"] == port
            assert container["args"] == [service]


@pytest.mark.parametrize("values", VALUES_FILES)
def test_every_container_has_resources_probes_and_a_hardened_security_context(values):
    for service, spec in pod_specs(render(values_of(values))).items():
        assert spec["automountServiceAccountToken"] is False
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] and pod["seccompProfile"]["type"] == "RuntimeDefault"
        for container in spec["containers"]:
            assert container["resources"]["requests"]["memory"], service
            assert container["resources"]["limits"]["memory"], service
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            assert "/tmp" in mounts  # the only writable place besides /data
            if service in SETTINGS:  # with TLS (the default), on the plaintext health port
                tls = values_of(values).get("tls", {}).get("enabled", True)
                port = 8086 if tls else container["ports"][0]["containerPort"]
                assert container["readinessProbe"]["grpc"]["port"] == port
                assert container["livenessProbe"]["grpc"]["service"] == "liveness"
    specs = pod_specs(render())
    for service in ("embedding", "generation"):  # they load models
        assert "startupProbe" in specs[service]["containers"][0]


def test_internal_services_are_headless_and_dialled_on_every_pod():
    objects = render()
    services = {component(s): s for s in of_kind(objects, "Service")}
    for service in ("retrieval", "generation", "embedding"):
        assert services[service]["spec"]["clusterIP"] == "None"
    assert services["query"]["spec"]["type"] == "ClusterIP"
    configs = {component(c): c["data"] for c in of_kind(objects, "ConfigMap")}
    for caller in SETTINGS:
        for callee in callees(caller):
            target = configs[caller][f"RAG_{caller.upper()}_{callee.upper()}_TARGET"]
            name = services[callee]["metadata"]["name"]
            port = services[callee]["spec"]["ports"][0]["port"]
            assert target == f"dns:///{name}.prod.svc.cluster.local:{port}"
        assert float(configs[caller][f"RAG_{caller.upper()}_MAX_CONNECTION_AGE_S"]) > 0


def selected_components(peers: list[dict]) -> set[str]:
    return {
        p["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for p in peers
        if "podSelector" in p and "app.kubernetes.io/component" in p["podSelector"]["matchLabels"]
    }


@pytest.mark.parametrize("values", ["default", "production"])
def test_network_policies_allow_exactly_the_calls_the_services_make(values):
    objects = render(values_of(values))
    policies = {component(p): p["spec"] for p in of_kind(objects, "NetworkPolicy")}
    assert set(policies) == set(SETTINGS)
    helpers = {"test", "backup"}  # the helm test pod, and the backup job (retrieval only)
    for service, policy in policies.items():
        callers = {c for c in SETTINGS if service in callees(c)}
        [grpc_rule, *_] = policy["ingress"]
        if service == "query":  # the public entry: anyone, or the configured peers
            assert grpc_rule.get("from", []) == values_of(values).get("networkPolicy", {}).get(
                "queryFrom", []
            )
        else:
            allowed = selected_components(grpc_rule["from"]) - helpers
            assert allowed == callers, (service, allowed)
        in_release = set()
        for rule in policy["egress"]:
            in_release |= selected_components(rule.get("to", [])) & set(SETTINGS)
        assert in_release == callees(service), (service, in_release)


def test_no_secret_ever_lands_in_a_config_map():
    values = values_of("production")
    objects = render(values)
    for config_map in of_kind(objects, "ConfigMap"):
        for key, value in config_map["data"].items():
            assert "API_KEY" not in key and "api_key" not in value, (key, value)
    [generation] = [s["containers"][0] for n, s in pod_specs(objects).items() if n == "generation"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in generation["env"]}
    assert refs["RAG_GENERATION_PROVIDERS"]["name"] == "rag-secrets"
    [query] = [s["containers"][0] for n, s in pod_specs(objects).items() if n == "query"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in query["env"]}
    assert refs["RAG_QUERY_API_KEYS"] == {
        "name": "rag-secrets",
        "key": "RAG_QUERY_API_KEYS",
        "optional": False,
    }
    # Every pod that calls or serves an internal port signs with the shared key.
    for name, spec in pod_specs(objects).items():
        if name in (*SETTINGS, "backup"):
            env = {e["name"]: e for e in spec["containers"][0].get("env", [])}
            ref = env["RAG_IDENTITY_KEY"]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": "rag-secrets", "key": "RAG_IDENTITY_KEY", "optional": False}


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        (
            {"generation": {"providers": [{"name": "o", "kind": "openai", "api_key": "sk-1"}]}},
            "/generation/providers/0",
        ),
        ({"query": {"settings": {"API_KEYS": "{}"}}}, "/query/settings"),
        ({"redis": {"url": "redis://:password@redis:6379/0"}}, "/redis/url"),
        ({"qdrant": {"url": "qdrant:6333"}}, "/qdrant/url"),
        ({"query": {"replicas": 0}}, "/query/replicas"),
        ({"retrival": {"replicas": 2}}, "retrival"),
        ({"customMetrics": {"mode": "hpa"}}, "/customMetrics/mode"),
    ],
)
def test_bad_values_are_refused_with_the_key_named(values, complaint):
    with pytest.raises(helm.HelmError) as refused:
        helm.Chart.load(str(CHART)).validate_schema(values)
    assert complaint in str(refused.value)


def test_the_embedded_store_is_one_stateful_replica_and_more_are_refused():
    objects = render()
    [statefulset] = of_kind(objects, "StatefulSet")
    assert component(statefulset) == "retrieval" and statefulset["spec"]["replicas"] == 1
    [claim] = statefulset["spec"]["volumeClaimTemplates"]
    mounts = statefulset["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {"name": claim["metadata"]["name"], "mountPath": "/data"} in mounts
    assert "retrieval" not in {component(h) for h in of_kind(objects, "HorizontalPodAutoscaler")}
    with pytest.raises(helm.HelmError, match=r"needs qdrant\.url"):
        render({"retrieval": {"replicas": 2}})
    scaled = render({"qdrant": {"url": "http://qdrant:6333"}, "retrieval": {"replicas": 3}})
    assert not of_kind(scaled, "StatefulSet")
    assert "retrieval" in {component(d) for d in of_kind(scaled, "Deployment")}


def test_rollouts_never_drop_below_the_serving_replicas_and_disruptions_are_bounded():
    objects = render(values_of("production"))
    for deployment in of_kind(objects, "Deployment"):
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    budgets = {component(p) for p in of_kind(objects, "PodDisruptionBudget")}
    assert budgets == set(SETTINGS)


def test_a_settings_change_rolls_only_the_pods_it_concerns():
    def checksums(values):
        return {
            component(w): w["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            for w in render(values)
            if w["kind"] in ("Deployment", "StatefulSet")
        }

    before = checksums({})
    after = checksums({"query": {"settings": {"DEFAULT_TOP_K": "8"}}})
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"query"}


def test_autoscalers_read_metrics_the_services_export():
    exported = {m.name for m in RpcMetrics("query").registry.collect()}
    adapter = render(values_of("production"))
    for hpa in of_kind(adapter, "HorizontalPodAutoscaler"):
        resources = {m["resource"]["name"] for m in hpa["spec"]["metrics"] if "resource" in m}
        assert resources == {"cpu", "memory"}
        pods = [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if "pods" in m]
        assert pods and set(pods) <= exported
    keda = render({"customMetrics": {"enabled": True, "mode": "keda"}})
    assert not of_kind(keda, "HorizontalPodAutoscaler")
    for scaled in of_kind(keda, "ScaledObject"):
        queries = [
            t["metadata"]["query"] for t in scaled["spec"]["triggers"] if "query" in t["metadata"]
        ]
        assert queries and all(any(name in q for name in exported) for q in queries)


def test_scheduled_backups_archive_the_embedded_store_onto_their_own_volume():
    assert not of_kind(render(), "CronJob")  # off by default
    objects = render({"backup": {"enabled": True, "schedule": "30 2 * * *", "keep": 5}})
    [cronjob] = of_kind(objects, "CronJob")
    assert cronjob["spec"]["schedule"] == "30 2 * * *"
    spec = pod_specs(objects)["backup"]
    [container] = spec["containers"]
    args = container["command"] + container["args"]
    assert args[args.index("--retrieval") + 1] == "rag-retrieval:50052"
    assert args[args.index("--keep") + 1] == "5"
    [claim] = of_kind(objects, "PersistentVolumeClaim")
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["backups"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    # The retrieval port lets the backup job in (and nothing else beyond its callers).
    [policy] = [p for p in of_kind(objects, "NetworkPolicy") if component(p) == "retrieval"]
    assert "backup" in selected_components(policy["spec"]["ingress"][0]["from"])
    for obj in objects:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    # A Qdrant server is backed up the same way (retrieval asks it for a snapshot).
    server = render({"backup": {"enabled": True}, "qdrant": {"url": "http://qdrant:6333"}})
    assert of_kind(server, "CronJob")


def test_tls_mounts_one_secret_everywhere_and_probes_a_plaintext_health_port():
    values = {
        "tls": {"enabled": True, "secretName": "rag-tls", "probePort": 8086},
        "backup": {"enabled": True},
        "existingSecret": "rag-secrets",
    }
    objects = render(values)
    for obj in objects:
        if obj["kind"] not in CUSTOM_RESOURCES:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    for service, spec in pod_specs(objects).items():
        [container] = spec["containers"]
        secrets = {v["name"]: v.get("secret", {}).get("secretName") for v in spec["volumes"]}
        assert secrets["tls"] == "rag-tls", service
        assert "/etc/rag/tls" in {m["mountPath"] for m in container["volumeMounts"]}, service
        if service in SETTINGS:
            for probe in ("readinessProbe", "livenessProbe"):
                assert container[probe]["grpc"]["port"] == 8086, (service, probe)
        else:  # helm test and backups call the services: their client certificate
            env = {e["name"]: e.get("value") for e in container["env"]}
            assert env["RAG_TLS_CA_FILE"] == "/etc/rag/tls/ca.crt", service
    for config_map in of_kind(objects, "ConfigMap"):
        service = component(config_map)
        if service in SETTINGS:
            data = config_map["data"]
            assert data["RAG_TLS_CERT_FILE"] == "/etc/rag/tls/tls.crt"
            assert data[f"RAG_{service.upper()}_PROBE_PORT"] == "8086"


def test_tls_without_a_secret_is_refused_by_name():
    with pytest.raises(Exception, match=r"tls\.secretName"):
        render({"tls": {"enabled": True}})


def test_an_install_is_plaintext_only_when_it_says_so():
    """TLS is the default: an install that names no certificate Secret is refused, and
    plaintext takes an explicit tls.enabled=false."""
    with pytest.raises(Exception, match=r"tls\.secretName"):
        helm.Chart.load(str(CHART)).render({}, name="rag", namespace="prod")
    plaintext = render({"tls": {"enabled": False}})
    for config_map in of_kind(plaintext, "ConfigMap"):
        assert "RAG_TLS_CERT_FILE" not in config_map.get("data", {})


def test_several_query_replicas_without_a_shared_redis_are_refused():
    """Each replica would keep its own corpus versions: a delete through one would leave
    its text in the others' caches."""
    for query in ({"replicas": 2, "autoscaling": {"enabled": False}}, {}):  # {}: autoscaled
        with pytest.raises(Exception, match=r"redis\.url"):
            render({"redis": {"url": ""}, "query": query})
    single = {"replicas": 1, "autoscaling": {"enabled": False}}
    assert of_kind(render({"redis": {"url": ""}, "query": single}), "Deployment")
