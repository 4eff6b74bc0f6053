"""The operator's /metrics on the real test bed agree with the ManagedCertificate status, and
deploy/monitoring renders with kubectl kustomize.

A real `certfleet operator` process issues through pebble and publishes to the real S3; its
metrics endpoint is scraped over HTTP as Prometheus would.
"""

from __future__ import annotations

import secrets
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from e2e.fleet import Fleet
from testbed.acme_ca import AcmeCA
from testbed.certfleet_install import REPO, CertfleetInstall, load_example
from testbed.control_plane import ControlPlane
from testbed.waiting import wait_for

pytestmark = pytest.mark.testbed

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass
class Setup:
    install: CertfleetInstall
    ca: AcmeCA
    namespace: str
    cloudhost: str

    def apply_certificate(self, name: str, domain: str, **spec: Any) -> None:
        resource = load_example("automatic.yaml")
        resource["metadata"].update(name=name, namespace=self.namespace)
        resource["spec"].update(domain=domain, cloudhost=self.cloudhost)
        resource["spec"]["acme"]["server"] = self.ca.directory_url
        resource["spec"].update(spec)
        self.install.apply(resource)

    def scrape(self) -> Samples:
        assert self.install.metrics_port is not None
        url = f"http://127.0.0.1:{self.install.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        assert "PRIVATE KEY" not in text
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def wait_for_metrics(
        self, check: Callable[[Samples], bool], what: str, timeout: float = 15
    ) -> Samples:
        """Scrapes until `check` holds: the status is patched just before the metrics move."""
        samples: Samples = {}

        def checked() -> Samples | None:
            nonlocal samples
            samples = self.scrape()
            return samples if check(samples) else None

        return wait_for(
            lambda: f"the metrics showing {what}:\n{_certfleet(samples)}", checked, timeout, 0.1
        )


def _certfleet(samples: Samples) -> str:
    return "\n".join(
        f"{name}{dict(labels)} {value}"
        for (name, labels), value in sorted(samples.items(), key=str)
        if name.startswith("certfleet_")
    )


def value(samples: Samples, metric: str, /, **labels: str) -> float | None:
    return samples.get((metric, frozenset(labels.items())))


def _unix(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


@pytest.fixture
def setup(fleet: Fleet) -> Setup:
    """The e2e fleet (tests/e2e/conftest.py): pebble, a CloudHost on the real S3, an nginx that
    proxies challenges to the operator, and the operator process."""
    return Setup(fleet.install, fleet.ca, fleet.namespace, fleet.cloudhost)


def test_metrics_agree_with_the_status_of_an_issued_certificate(setup: Setup) -> None:
    domain = f"www-{secrets.token_hex(4)}.certfleet.test"
    setup.apply_certificate("web", domain)
    status = setup.install.wait_for_condition(setup.namespace, "web", "True", "Issued")["status"]
    cert = {"namespace": setup.namespace, "name": "web", "domain": domain}

    expiration = "certfleet_certificate_expiration_timestamp_seconds"
    samples = setup.wait_for_metrics(lambda s: value(s, expiration, **cert) is not None, expiration)
    assert value(samples, expiration, **cert) == _unix(status["notAfter"])
    renewal = value(samples, "certfleet_certificate_renewal_timestamp_seconds", **cert)
    assert renewal == _unix(status["renewalTime"])
    ready = {
        condition: value(samples, "certfleet_certificate_ready_status", **cert, condition=condition)
        for condition in ("True", "False", "Unknown")
    }
    assert ready == {"True": 1.0, "False": 0.0, "Unknown": 0.0}
    serial = status["serialNumber"]
    published = "certfleet_certificate_published_serial_info"
    assert value(samples, published, **cert, serial=serial) == 1
    assert value(samples, "certfleet_certificate_failed_issuance_attempts", **cert) == 0
    assert value(samples, "certfleet_manual_renewal_required", **cert) == 0
    attempts = "certfleet_certificate_issuance_attempts_total"
    issued = {"namespace": setup.namespace, "name": "web", "result": "success", "reason": "Issued"}
    assert value(samples, attempts, **issued) == 1

    # The ACME requests of the order, through AcmeIssuer's hook, and the S3 calls of the
    # publication, through botocore's events.
    acme = {
        dict(labels)["operation"]: count
        for (name, labels), count in samples.items()
        if name == "certfleet_acme_client_request_duration_seconds_count"
    }
    assert acme.get("new-order", 0) >= 1 and acme.get("finalize", 0) >= 1, acme
    operations = "certfleet_datastore_operations_total"
    assert (value(samples, operations, operation="PutObject", result="success") or 0) >= 3
    assert value(samples, "certfleet_operator_leader") == 1

    # Deleted: its series go with it.
    setup.install.control_plane.kubectl(
        "delete", "mcert", "web", "-n", setup.namespace, "--timeout=30s"
    )
    setup.wait_for_metrics(
        lambda s: not any(dict(labels).get("name") == "web" for _, labels in s),
        "the deleted certificate's series gone",
    )


def test_metrics_of_a_certificate_that_cannot_be_issued(setup: Setup) -> None:
    """An unreachable CA: not Ready, no expiry series (nothing was ever published), and
    the failures counted as in the status."""
    domain = f"www-{secrets.token_hex(4)}.certfleet.test"
    setup.apply_certificate("broken", domain, acme={"server": "https://127.0.0.1:1/dir"})
    cert = {"namespace": setup.namespace, "name": "broken", "domain": domain}
    failed = "certfleet_certificate_failed_issuance_attempts"
    samples = setup.wait_for_metrics(
        lambda s: (value(s, failed, **cert) or 0) >= 1, failed, timeout=30
    )

    status = setup.install.managed_certificate(setup.namespace, "broken")["status"]
    assert status["conditions"][0]["status"] == "False"
    ready = value(samples, "certfleet_certificate_ready_status", **cert, condition="False")
    assert ready == 1
    expiration = "certfleet_certificate_expiration_timestamp_seconds"
    assert value(samples, expiration, **cert) is None
    attempts = "certfleet_certificate_issuance_attempts_total"
    failures = {
        "namespace": setup.namespace,
        "name": "broken",
        "result": "failure",
        "reason": "IssuanceFailed",
    }
    assert (value(samples, attempts, **failures) or 0) >= 1
    # The consecutive count follows the status (which may have moved on since the scrape).
    assert value(samples, failed, **cert) in (
        status["failedIssuanceAttempts"],
        status["failedIssuanceAttempts"] - 1,
    )


def test_monitoring_kustomization_renders(control_plane: ControlPlane) -> None:
    rendered = control_plane.kubectl("kustomize", str(REPO / "deploy" / "monitoring")).stdout
    documents = [d for d in yaml.safe_load_all(rendered) if d]
    kinds = {(d["kind"], d["metadata"]["name"]) for d in documents}
    assert kinds == {
        ("PrometheusRule", "certfleet"),
        ("PodMonitor", "certfleet-operator"),
        ("PodMonitor", "certfleet-agent"),
        ("ConfigMap", "certfleet-grafana-dashboard"),
    }
    assert all(d["metadata"]["namespace"] == "certfleet-system" for d in documents)
    (rule,) = (d for d in documents if d["kind"] == "PrometheusRule")
    rules = yaml.safe_load((REPO / "deploy" / "monitoring" / "certfleet-rules.yaml").read_text())
    assert rule["spec"] == rules
    (dashboard,) = (d for d in documents if d["kind"] == "ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    source = (REPO / "deploy" / "monitoring" / "grafana-dashboard.json").read_text()
    assert dashboard["data"]["certfleet.json"] == source
