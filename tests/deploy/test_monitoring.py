"""Alerts, recording rules, the ServiceMonitor and the dashboard the chart ships.

Which metric names they read is checked against what the running services export in
tests/integration/test_observability.py; here: that they render, parse and agree with the
services' own health thresholds.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml
from google.protobuf import descriptor_pool

from rag.v1 import admin_service_pb2, document_service_pb2, retrieval_service_pb2  # noqa: F401
from rag_common.health.signals import Thresholds
from rag_query import __main__ as query_main
from rag_retrieval import __main__ as retrieval_main
from tests.deploy.monitoring import (
    DASHBOARD,
    PRODUCTION,
    metric_names,
    panel_expressions,
    referenced_metric_names,
    rules,
)
from tests.deploy.test_chart import CHART, SETTINGS, component, of_kind, render, values_of

SERVICES = tuple(SETTINGS)

# values.yaml key -> the services' own default for the same threshold
THRESHOLDS = {
    "p95WarningSeconds": "p95_warning_s",
    "p95CriticalSeconds": "p95_critical_s",
    "errorRateWarning": "error_rate_warning",
    "errorRateCritical": "error_rate_critical",
    "cacheHitRateWarning": "cache_hit_rate_warning",
    "cacheHitRateCritical": "cache_hit_rate_critical",
    "cpuWarning": "cpu_warning",
    "cpuCritical": "cpu_critical",
    "memoryWarning": "memory_warning",
    "memoryCritical": "memory_critical",
}


def test_nothing_for_prometheus_is_rendered_unless_asked_for():
    kinds = {o["kind"] for o in render(values_of("default"))}
    assert not kinds & {"ServiceMonitor", "PrometheusRule"}


def test_every_rule_and_panel_parses_as_promql():
    expressions = [r["expr"] for r in rules()] + panel_expressions()
    assert len(expressions) > 20
    for expression in expressions:
        assert metric_names(expression), expression


def test_the_alerts_use_the_same_thresholds_as_the_services_health():
    thresholds = yaml.safe_load((CHART / "values.yaml").read_text())["monitoring"]["thresholds"]
    defaults = Thresholds()
    assert {THRESHOLDS[k]: v for k, v in thresholds.items()} == {
        field: getattr(defaults, field) for field in THRESHOLDS.values()
    }
    alerts = {(r["alert"], r["labels"]["severity"]): r["expr"] for r in rules() if "alert" in r}
    assert alerts[("RagLatencyHigh", "warning")].endswith("> 2")
    assert alerts[("RagLatencyHigh", "critical")].endswith("> 5")
    assert alerts[("RagErrorRateHigh", "critical")].endswith("> 0.05")
    assert "< 0.3 and" in alerts[("RagCacheHitRateLow", "warning")]
    assert alerts[("RagMemoryHigh", "critical")].endswith("> 0.9")
    # ... and each service is told the same thresholds for its health details.
    settings = [
        c["data"] for c in of_kind(render(PRODUCTION), "ConfigMap") if component(c) in SERVICES
    ]
    assert len(settings) == len(SERVICES)
    for data in settings:
        prefix = next(k for k in data if k.endswith("_HEALTH_P95_CRITICAL_S")).removesuffix(
            "HEALTH_P95_CRITICAL_S"
        )
        assert data[f"{prefix}HEALTH_P95_CRITICAL_S"] == "5", prefix
        assert data[f"{prefix}HEALTH_CACHE_HIT_RATE_WARNING"] == "0.3", prefix


def untimed_methods() -> set[str]:
    """Methods the services leave out of their latency signal, by name."""
    methods = set()
    for prefix in (*query_main.UNTIMED, *retrieval_main.UNTIMED):
        service, _, method = prefix.strip("/").partition("/")
        if method:
            methods.add(method)
            continue
        descriptor = descriptor_pool.Default().FindServiceByName(service)
        methods |= {m.name for m in descriptor.methods}
    return methods


def test_the_latency_alert_leaves_out_the_bulk_calls_the_services_leave_out():
    [latency] = [r["expr"] for r in rules() if r.get("record") == "rag:request_latency_p95_seconds"]
    excluded = re.search(r'method!~"\.\*/\(([^)]*)\)"', latency).group(1).split("|")
    assert set(excluded) == untimed_methods()


def test_the_service_monitor_scrapes_every_pods_metrics_port_keeping_the_service_label():
    objects = render(PRODUCTION)
    [monitor] = of_kind(objects, "ServiceMonitor")
    services = {s["metadata"]["name"]: s for s in of_kind(objects, "Service")}
    [target] = [
        s
        for s in services.values()
        if all(
            s["metadata"]["labels"].get(k) == v
            for k, v in monitor["spec"]["selector"]["matchLabels"].items()
        )
    ]
    assert target["spec"]["clusterIP"] == "None"
    assert {p["name"] for p in target["spec"]["ports"]} == {"metrics"}
    assert "app.kubernetes.io/component" not in target["spec"]["selector"]  # all four
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["honorLabels"] is True
    workloads = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
    for workload in workloads:
        [container] = workload["spec"]["template"]["spec"]["containers"]
        assert "metrics" in {p["name"] for p in container["ports"]}


def test_the_dashboard_ships_in_a_config_map_grafana_picks_up():
    [config_map] = [c for c in of_kind(render(PRODUCTION), "ConfigMap") if "rag.json" in c["data"]]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config_map["data"]["rag.json"])
    assert dashboard == json.loads(DASHBOARD.read_text())
    titles = " | ".join(p["title"] for p in dashboard["panels"])
    for topic in (
        "latency",
        "per stage",
        "Throughput",
        "Error rate",
        "Cache hit",
        "breakers",
        "tokens",
        "cost",
        "Degraded",
    ):
        assert topic.lower() in titles.lower(), topic


@pytest.mark.parametrize(
    "name",
    [
        "rag_request_duration_seconds_bucket",
        "rag_errors_total",
        "rag_cache_requests_total",
        "rag_breaker_state",
        "rag_llm_cost_usd_total",
        "rag_degraded_answers_total",
    ],
)
def test_the_signals_an_operator_needs_are_all_read(name):
    assert name in referenced_metric_names()


def test_tracing_sends_every_service_s_spans_to_the_collector_it_may_reach():
    collector = [{"to": [{"podSelector": {"matchLabels": {"app": "otel-collector"}}}]}]
    objects = render(
        {
            "tracing": {"enabled": True, "otlpEndpoint": "http://otel:4317", "samplerRatio": 0.25},
            "networkPolicy": {"egress": {"tracing": collector}},
        }
    )
    settings = {component(c): c["data"] for c in of_kind(objects, "ConfigMap")}
    for service in SERVICES:
        assert settings[service]["OTEL_TRACES_EXPORTER"] == "otlp"
        assert settings[service]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel:4317"
        assert settings[service]["OTEL_TRACES_SAMPLER_ARG"] == "0.25"
        assert settings[service]["OTEL_SERVICE_NAME"] == f"rag-{service}"
    for policy in of_kind(objects, "NetworkPolicy"):
        assert collector[0] in policy["spec"]["egress"], component(policy)
    assert "OTEL_TRACES_EXPORTER" not in of_kind(render({}), "ConfigMap")[0]["data"]
