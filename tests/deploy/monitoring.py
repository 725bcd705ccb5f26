"""The PromQL the chart ships (alert and recording rules, dashboard panels), parsed."""

from __future__ import annotations

import json
from pathlib import Path

import promql_parser
import yaml

from tests.deploy.test_chart import CHART, of_kind, render

PRODUCTION = yaml.safe_load((CHART / "values-production.yaml").read_text())
DASHBOARD = CHART / "dashboards" / "rag.json"


def rules() -> list[dict]:
    """Every rule of the PrometheusRule the production values render."""
    [rule] = of_kind(render(PRODUCTION), "PrometheusRule")
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def panel_expressions(path: Path = DASHBOARD) -> list[str]:
    """Every query of every dashboard panel, with Grafana's interval variable filled in."""
    dashboard = json.loads(path.read_text())
    return [
        target["expr"].replace("$__rate_interval", "5m")
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]


def metric_names(expression: str) -> set[str]:
    """The metric names an expression selects (it must parse)."""
    names: set[str] = set()

    def visit(node) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(expression), pre_visit=visit)
    return names


def referenced_metric_names() -> set[str]:
    """Metrics the rules and the dashboard read, leaving out the rules' own records."""
    recorded = {r["record"] for r in rules() if "record" in r}
    expressions = [r["expr"] for r in rules()] + panel_expressions()
    return {name for e in expressions for name in metric_names(e)} - recorded
