"""deploy/monitoring: the alert rules pass promtool's checks and unit tests, the PrometheusRule
is generated from the one rule file, and the rules and the Grafana dashboard use only metrics
that certfleet exports (the operator's and the agent's), in PromQL that parses.

promtool comes from Debian's prometheus package (tests/testbed/install-system-packages.sh); a
missing promtool fails these tests, it never skips them.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from certfleet.agent.metrics import AgentMetrics
from certfleet.controller.metrics import OperatorMetrics
from testbed import binaries

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
RULES = MONITORING / "certfleet-rules.yaml"
RULE_TESTS = Path(__file__).resolve().parent / "certfleet-rules.test.yaml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
# Grafana's variables, replaced by something PromQL parses.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$namespace": ".*"}


def promtool(*args: str, cwd: Path = ROOT) -> str:
    command = [str(binaries.system_program("promtool")), *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False, cwd=cwd)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(RULES)["groups"] for rule in group["rules"]]


def test_promtool_checks_the_rules() -> None:
    output = promtool("check", "rules", str(RULES))
    assert f"SUCCESS: {len(alert_rules())} rules found" in output


def test_promtool_unit_tests_of_the_alerts_pass() -> None:
    output = promtool("test", "rules", str(RULE_TESTS))
    assert "SUCCESS" in output


def test_every_alert_is_tested_firing_and_silent() -> None:
    fired: set[str] = set()
    silent: set[str] = set()
    for case in load_yaml(RULE_TESTS)["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - fired == set(), "alerts never shown firing"
    assert names - silent == set(), "alerts never shown staying silent"


def test_every_alert_says_how_bad_what_and_what_to_do() -> None:
    for rule in alert_rules():
        assert rule["alert"].startswith("Certfleet"), rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"].strip(), rule["alert"]
        assert "What to do:" in annotations["description"], rule["alert"]
        assert "for" in rule, f"{rule['alert']} would fire on a single evaluation"


def test_prometheusrule_is_generated_from_the_rule_file() -> None:
    resource = load_yaml(MONITORING / "prometheusrule.yaml")
    assert resource["apiVersion"] == "monitoring.coreos.com/v1"
    assert resource["kind"] == "PrometheusRule"
    assert resource["spec"] == load_yaml(RULES)
    script = MONITORING / "render_prometheusrule.py"
    result = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


# The sample names of each metric type, as prometheus-client exposes them.
SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "info": ("_info",),
    "summary": ("", "_sum", "_count", "_created"),
}


def exported_metric_names() -> set[str]:
    """Every sample name the operator and the agent expose, from their registries."""
    registries = (
        OperatorMetrics(CollectorRegistry()).registry,
        AgentMetrics(CollectorRegistry()).registry,
    )
    return {
        family.name + suffix
        for registry in registries
        for family in registry.collect()
        for suffix in SAMPLE_SUFFIXES[family.type]
    }


def certfleet_names(text: str) -> set[str]:
    return set(re.findall(r"\bcertfleet_[a-z0-9_]+", text))


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            expressions.append(variable["definition"])
    return expressions


def test_the_exported_names_are_the_documented_ones() -> None:
    names = exported_metric_names()
    for expected in (
        "certfleet_certificate_expiration_timestamp_seconds",
        "certfleet_certificate_renewal_timestamp_seconds",
        "certfleet_certificate_ready_status",
        "certfleet_certificate_issuance_attempts_total",
        "certfleet_manual_renewal_required",
        "certfleet_certificate_failed_issuance_attempts",
        "certfleet_certificate_published_serial_info",
        "certfleet_acme_client_request_duration_seconds_bucket",
        "certfleet_datastore_operations_total",
        "certfleet_operator_leader",
        "certfleet_agent_certificate_expiration_timestamp_seconds",
        "certfleet_agent_last_successful_sync_timestamp_seconds",
        "certfleet_agent_sync_errors_total",
        "certfleet_agent_reloads_total",
        "certfleet_agent_served_serial_info",
    ):
        assert expected in names


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_only_exported_metrics_are_used(source: str) -> None:
    text = RULES.read_text() if source == "rules" else "\n".join(dashboard_expressions())
    used = certfleet_names(text)
    assert used, "no certfleet metric found: the extraction is broken"
    assert used - exported_metric_names() == set()


def test_dashboard_promql_parses(tmp_path: Path) -> None:
    """promtool parses the dashboard's queries as recording rules (it has no other way)."""
    expressions = dashboard_expressions()
    rules = []
    for number, expression in enumerate(expressions):
        for variable, replacement in GRAFANA_VARIABLES.items():
            expression = expression.replace(variable, replacement)
        if expression.startswith("label_values("):
            metric = expression.removeprefix("label_values(").split(",")[0]
            expression = metric
        assert "$" not in expression, f"an unknown Grafana variable in {expression}"
        rules.append({"record": f"certfleet:dashboard_query_{number}", "expr": expression})
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    output = promtool("check", "rules", str(path))
    assert f"SUCCESS: {len(rules)} rules found" in output


def test_dashboard_shows_what_an_operator_needs() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    titles = {panel["title"] for panel in panels}
    for wanted in (
        "Time to expiry",
        "Certificates: expiry, renewal and readiness",
        "ACME issuances",
        "Agent sync age",
        "Served serial per node",
        "Published serial per certificate",
    ):
        assert wanted in titles
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["targets"], panel["title"]


def test_podmonitors_scrape_ports_the_workloads_name() -> None:
    monitors = list(yaml.safe_load_all((MONITORING / "podmonitors.yaml").read_text()))
    workloads = {
        "certfleet-operator": load_yaml(ROOT / "deploy" / "operator-deployment.yaml"),
        "certfleet-agent": next(
            d
            for d in yaml.safe_load_all(
                (ROOT / "deploy" / "node-agent" / "daemonset.yaml").read_text()
            )
            if d["kind"] == "DaemonSet"
        ),
    }
    assert {m["metadata"]["name"] for m in monitors} == set(workloads)
    for monitor in monitors:
        workload = workloads[monitor["metadata"]["name"]]
        template = workload["spec"]["template"]
        labels = template["metadata"]["labels"]
        assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
        # The alert rules match job="certfleet-operator" and job="certfleet-agent".
        assert labels[monitor["spec"]["jobLabel"]] == monitor["metadata"]["name"]
        (container,) = template["spec"]["containers"]
        ports = {port["name"] for port in container.get("ports", [])}
        for endpoint in monitor["spec"]["podMetricsEndpoints"]:
            assert endpoint["port"] in ports, f"{monitor['metadata']['name']}: {endpoint['port']}"
