"""The operator's metrics: from a reconciliation's outcome and status to series, read back
from the registry as Prometheus would see them."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto import mock_aws
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from certfleet.api.status import CertificateStatus
from certfleet.controller.metrics import OperatorMetrics, certificate_series
from certfleet.controller.plan import Outcome
from certfleet.controller.report import status_from_outcome
from certfleet.core.facts import CertificateFacts

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
NOT_AFTER = NOW + timedelta(days=90)
# Computed renewal times carry microseconds; the status stores whole seconds.
RENEW_AT = NOT_AFTER - timedelta(days=7, microseconds=250_000)
SERIAL = "0a1b2c3d4e5f"
FACTS = CertificateFacts(
    serial=SERIAL,
    sha256="ab" * 32,
    not_before=NOW - timedelta(days=1),
    not_after=NOT_AFTER,
    dns_names=("www.example.com",),
    subject="CN=www.example.com",
    issuer="CN=Test CA",
    key="ECDSA-secp256r1",
)
NS, NAME, DOMAIN = "shop", "web", "www.example.com"


def issued() -> Outcome:
    return Outcome(True, "Issued", "issued", facts=FACTS, renew_at=RENEW_AT, revision=1)


def failed(still_serving: bool) -> Outcome:
    if still_serving:
        return Outcome(
            True,
            "IssuanceFailed",
            "the CA said no",
            facts=FACTS,
            renew_at=RENEW_AT,
            issuance_failed=True,
            retry_after=30,
        )
    return Outcome(False, "IssuanceFailed", "the CA said no", issuance_failed=True, retry_after=30)


def written(outcome: Outcome, previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The status after the reconciliation's merge patch, as the reporter has it."""
    before = dict(previous or {})
    return {**before, **status_from_outcome(outcome, CertificateStatus.from_dict(before), 1, NOW)}


def value(metrics: OperatorMetrics, metric: str, /, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(metric, labels)


@pytest.fixture
def metrics() -> OperatorMetrics:
    return OperatorMetrics(CollectorRegistry())


def record(metrics: OperatorMetrics, outcome: Outcome, status: Mapping[str, Any]) -> None:
    metrics.record_reconciliation(NS, NAME, DOMAIN, outcome, CertificateStatus.from_dict(status))


CERT = {"namespace": NS, "name": NAME, "domain": DOMAIN}


def test_issued_certificate_exports_what_its_status_says(metrics: OperatorMetrics) -> None:
    status = written(issued())
    record(metrics, issued(), status)

    expiration = value(metrics, "certfleet_certificate_expiration_timestamp_seconds", **CERT)
    renewal = value(metrics, "certfleet_certificate_renewal_timestamp_seconds", **CERT)
    assert expiration == datetime.fromisoformat(status["notAfter"]).timestamp()
    assert renewal == datetime.fromisoformat(status["renewalTime"]).timestamp()
    assert renewal == int(RENEW_AT.timestamp())
    ready = {
        c: value(metrics, "certfleet_certificate_ready_status", **CERT, condition=c)
        for c in ("True", "False", "Unknown")
    }
    assert ready == {"True": 1.0, "False": 0.0, "Unknown": 0.0}
    assert value(metrics, "certfleet_manual_renewal_required", **CERT) == 0.0
    assert value(metrics, "certfleet_certificate_failed_issuance_attempts", **CERT) == 0.0
    assert value(metrics, "certfleet_certificate_published_serial_info", **CERT, serial=SERIAL) == 1
    attempts = "certfleet_certificate_issuance_attempts_total"
    assert value(metrics, attempts, namespace=NS, name=NAME, result="success", reason="Issued") == 1


def test_only_acme_issuances_count_as_attempts(metrics: OperatorMetrics) -> None:
    reused = Outcome(True, "Reused", "reused", facts=FACTS, renew_at=RENEW_AT, revision=1)
    waiting = Outcome(False, "DatastoreUnavailable", "S3 is down", retry_after=30)
    for outcome in (reused, waiting, reused):
        record(metrics, outcome, written(outcome))
    exposed = generate_latest(metrics.registry).decode()
    assert "certfleet_certificate_issuance_attempts_total{" not in exposed


def test_failures_count_up_and_a_success_resets_the_streak(metrics: OperatorMetrics) -> None:
    status: dict[str, Any] = written(issued())
    record(metrics, issued(), status)
    for _ in range(3):
        status = written(failed(still_serving=True), status)
        record(metrics, failed(still_serving=True), status)

    labels = {"namespace": NS, "name": NAME}
    attempts = "certfleet_certificate_issuance_attempts_total"
    assert value(metrics, attempts, **labels, result="failure", reason="IssuanceFailed") == 3
    assert value(metrics, attempts, **labels, result="success", reason="Issued") == 1
    assert value(metrics, "certfleet_certificate_failed_issuance_attempts", **CERT) == 3
    # Still serving the published certificate: Ready, and its expiry stays visible.
    assert value(metrics, "certfleet_certificate_ready_status", **CERT, condition="True") == 1
    assert value(metrics, "certfleet_certificate_expiration_timestamp_seconds", **CERT) == int(
        NOT_AFTER.timestamp()
    )

    status = written(issued(), status)
    record(metrics, issued(), status)
    assert value(metrics, "certfleet_certificate_failed_issuance_attempts", **CERT) == 0
    assert value(metrics, attempts, **labels, result="success", reason="Issued") == 2


def test_an_outcome_without_facts_keeps_the_published_certificate(
    metrics: OperatorMetrics,
) -> None:
    """A datastore outage says nothing about the certificate agents serve: its expiry and
    renewal time stay exported (from the status), so the expiry alert can still fire."""
    status = written(issued())
    outage = Outcome(False, "DatastoreUnavailable", "S3 is down", retry_after=30)
    status = written(outage, status)
    record(metrics, outage, status)

    assert value(metrics, "certfleet_certificate_expiration_timestamp_seconds", **CERT) == int(
        NOT_AFTER.timestamp()
    )
    assert value(metrics, "certfleet_certificate_renewal_timestamp_seconds", **CERT) == int(
        RENEW_AT.timestamp()
    )
    assert value(metrics, "certfleet_certificate_ready_status", **CERT, condition="False") == 1
    assert value(metrics, "certfleet_certificate_published_serial_info", **CERT, serial=SERIAL) == 1


def test_a_new_certificate_has_no_expiry_series_yet(metrics: OperatorMetrics) -> None:
    outcome = failed(still_serving=False)
    record(metrics, outcome, written(outcome))
    assert value(metrics, "certfleet_certificate_expiration_timestamp_seconds", **CERT) is None
    assert value(metrics, "certfleet_certificate_renewal_timestamp_seconds", **CERT) is None
    assert value(metrics, "certfleet_certificate_ready_status", **CERT, condition="False") == 1
    assert value(metrics, "certfleet_certificate_failed_issuance_attempts", **CERT) == 1
    exposed = generate_latest(metrics.registry).decode()
    assert "certfleet_certificate_published_serial_info{" not in exposed


def test_manual_renewal_required(metrics: OperatorMetrics) -> None:
    due = Outcome(
        True,
        "ManualRenewalRequired",
        "renewal is due and certfleet does not renew MANUAL certificates",
        facts=FACTS,
        renew_at=NOW - timedelta(hours=1),
        retry_after=30,
    )
    record(metrics, due, written(due))
    assert value(metrics, "certfleet_manual_renewal_required", **CERT) == 1
    exposed = generate_latest(metrics.registry).decode()
    assert "certfleet_certificate_issuance_attempts_total{" not in exposed


def test_a_changed_domain_leaves_no_stale_series(metrics: OperatorMetrics) -> None:
    record(metrics, issued(), written(issued()))
    metrics.record_reconciliation(
        NS, NAME, "shop.example.com", issued(), CertificateStatus.from_dict(written(issued()))
    )
    assert value(metrics, "certfleet_certificate_expiration_timestamp_seconds", **CERT) is None
    moved = {**CERT, "domain": "shop.example.com"}
    assert value(metrics, "certfleet_certificate_expiration_timestamp_seconds", **moved) == int(
        NOT_AFTER.timestamp()
    )


def test_an_invalid_spec_without_a_domain_still_reports_not_ready(
    metrics: OperatorMetrics,
) -> None:
    invalid = Outcome(False, "InvalidSpec", "spec.domain is required")
    metrics.record_reconciliation(
        NS, NAME, None, invalid, CertificateStatus.from_dict(written(invalid))
    )
    labels = {"namespace": NS, "name": NAME, "domain": "", "condition": "False"}
    assert value(metrics, "certfleet_certificate_ready_status", **labels) == 1


def test_deleted_certificates_lose_all_their_series(metrics: OperatorMetrics) -> None:
    record(metrics, issued(), written(issued()))
    metrics.record_reconciliation(
        NS, "other", "other.example.com", issued(), CertificateStatus.from_dict(written(issued()))
    )
    metrics.forget(NS, NAME)
    exposed = generate_latest(metrics.registry).decode()
    assert f'name="{NAME}"' not in exposed
    assert 'name="other"' in exposed
    metrics.forget_all()
    assert 'name="other"' not in generate_latest(metrics.registry).decode()


def test_a_replica_says_whether_it_acts(metrics: OperatorMetrics) -> None:
    assert value(metrics, "certfleet_operator_leader") == 0  # a standby, until elected
    metrics.set_leader(True)
    assert value(metrics, "certfleet_operator_leader") == 1
    metrics.set_leader(False)
    assert value(metrics, "certfleet_operator_leader") == 0


def test_acme_request_durations_by_operation(metrics: OperatorMetrics) -> None:
    metrics.acme_request(0.04, "new-order")
    metrics.acme_request(0.3, "new-order")
    metrics.acme_request(0.02, "directory")
    name = "certfleet_acme_client_request_duration_seconds"
    assert value(metrics, f"{name}_count", operation="new-order") == 2
    assert value(metrics, f"{name}_sum", operation="new-order") == pytest.approx(0.34)
    assert value(metrics, f"{name}_bucket", operation="new-order", le="0.05") == 1
    assert value(metrics, f"{name}_count", operation="directory") == 1


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client(
            "s3",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        client.create_bucket(Bucket="certfleet-metrics")
        yield client


def test_datastore_calls_are_counted_through_botocore_events(
    metrics: OperatorMetrics, s3: Any
) -> None:
    metrics.instrument_s3_client(s3)
    s3.put_object(Bucket="certfleet-metrics", Key="k", Body=b"x")
    etag = s3.get_object(Bucket="certfleet-metrics", Key="k")["ETag"]
    with pytest.raises(s3.exceptions.ClientError):
        s3.get_object(Bucket="certfleet-metrics", Key="k", IfNoneMatch=etag)
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket="certfleet-metrics", Key="missing")
    ops = "certfleet_datastore_operations_total"
    assert value(metrics, ops, operation="PutObject", result="success") == 1
    assert value(metrics, ops, operation="GetObject", result="success") == 1
    assert value(metrics, ops, operation="GetObject", result="not_modified") == 1
    assert value(metrics, ops, operation="GetObject", result="not_found") == 1


def test_unreachable_datastore_counts_connection_errors(metrics: OperatorMetrics) -> None:
    client = boto3.client(
        "s3",
        endpoint_url="http://127.0.0.1:9",  # discard port: nothing listens
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    metrics.instrument_s3_client(client)
    with pytest.raises(Exception, match="Could not connect"):
        client.get_object(Bucket="certfleet-metrics", Key="k")
    ops = "certfleet_datastore_operations_total"
    assert value(metrics, ops, operation="GetObject", result="connection_error") == 1


def test_served_over_http_in_prometheus_text_format(metrics: OperatorMetrics) -> None:
    record(metrics, issued(), written(issued()))
    server = metrics.serve("127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    expiration = families["certfleet_certificate_expiration_timestamp_seconds"]
    (sample,) = expiration.samples
    assert sample.labels == CERT
    assert sample.value == int(NOT_AFTER.timestamp())
    # Its own registry: process metrics, but not the global registry's python_gc_* series.
    assert "process_start_time_seconds" in text
    assert "python_gc_objects_collected_total" not in text


def test_pure_series_of_a_status_with_odd_values() -> None:
    status = {"failedIssuanceAttempts": "many", "notAfter": "not a time", "serialNumber": 7}
    outcome = Outcome(False, "DatastoreUnavailable", "down")
    series = certificate_series(DOMAIN, outcome, CertificateStatus.from_dict(status))
    assert series.failed_issuance_attempts == 0
    assert series.expiration is None
    assert series.serial is None
    assert series.attempt is None
