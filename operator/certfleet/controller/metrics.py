"""The operator's Prometheus metrics, on a registry of their own.

Named as cert-manager's (certmanager_certificate_* -> certfleet_certificate_*), so dashboards
and alerts written for cert-manager adapt by a prefix:

    certfleet_certificate_expiration_timestamp_seconds{namespace,name,domain}   status.notAfter
    certfleet_certificate_renewal_timestamp_seconds{namespace,name,domain}      status.renewalTime
    certfleet_certificate_ready_status{namespace,name,domain,condition}         1 for the current
                                                                                Ready condition
    certfleet_certificate_issuance_attempts_total{namespace,name,result,reason} ACME issuances
    certfleet_certificate_failed_issuance_attempts{namespace,name,domain}       failures in a row
    certfleet_manual_renewal_required{namespace,name,domain}                    MANUAL and due
    certfleet_certificate_published_serial_info{namespace,name,domain,serial}   what agents serve
    certfleet_acme_client_request_duration_seconds{operation}                   histogram
    certfleet_datastore_operations_total{operation,result}                      S3 API calls
    certfleet_operator_leader                                                   1 if acting

Labels hold names, reasons and serials (public: they are in CT logs), never key material.
The per-certificate series are snapshots computed by a pure function from what a
reconciliation wrote to the status, so the metrics say exactly what `kubectl get mcert` says.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from certfleet.api.reasons import CertificateReason
from certfleet.api.status import CertificateStatus
from certfleet.controller.plan import Outcome

log = logging.getLogger(__name__)

CONDITIONS = ("True", "False", "Unknown")
RESULT_SUCCESS = "success"
RESULT_FAILURE = "failure"
# ACME requests take tens of milliseconds on a near CA, seconds on a busy one; the issuer's
# own deadline (120 s by default) bounds the top.
ACME_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

_CERTIFICATE_LABELS = ("namespace", "name", "domain")


@dataclass(frozen=True)
class CertificateSeries:
    """What one ManagedCertificate exports after a reconciliation."""

    domain: str
    ready: str  # one of CONDITIONS
    expiration: float | None  # Unix seconds; None: no certificate known yet
    renewal: float | None
    serial: str | None
    manual_renewal_required: bool
    failed_issuance_attempts: int
    attempt: tuple[str, str] | None  # (result, reason) if this reconciliation ran ACME


def _seconds(moment: datetime | None, fallback: datetime | None) -> float | None:
    # Whole seconds, as the status stores them: the metric and `kubectl get` agree exactly.
    known = moment if moment is not None else fallback
    return float(int(known.timestamp())) if known is not None else None


def certificate_series(
    domain: str, outcome: Outcome, status: CertificateStatus
) -> CertificateSeries:
    """The series of one certificate after a reconciliation (pure).

    `status` is the resource's status with this reconciliation's patch applied. It supplies
    the consecutive failure count, and the certificate still published when this outcome
    carries none (a datastore outage must not make an expiring certificate vanish from the
    expiry alert).
    """
    facts = outcome.facts
    attempt = None
    if outcome.issuance_failed:
        attempt = (RESULT_FAILURE, outcome.reason)
    elif outcome.reason == CertificateReason.Issued:
        attempt = (RESULT_SUCCESS, outcome.reason)
    return CertificateSeries(
        domain=domain,
        ready="True" if outcome.ready else "False",
        expiration=_seconds(facts.not_after if facts else None, status.not_after),
        renewal=_seconds(outcome.renew_at, status.renewal_time),
        serial=facts.serial if facts else status.serial,
        manual_renewal_required=outcome.reason == CertificateReason.ManualRenewalRequired,
        failed_issuance_attempts=status.failed_issuance_attempts,
        attempt=attempt,
    )


def series_from_status(domain: str, status: CertificateStatus) -> CertificateSeries:
    """The series of a certificate as its status says, for a restart that takes the status
    as it stands (restart.py; pure)."""
    ready = status.ready
    return CertificateSeries(
        domain=domain,
        ready="True" if ready is not None and ready.status else "False",
        expiration=_seconds(status.not_after, None),
        renewal=_seconds(status.renewal_time, None),
        serial=status.serial,
        manual_renewal_required=ready is not None
        and ready.reason == CertificateReason.ManualRenewalRequired,
        failed_issuance_attempts=status.failed_issuance_attempts,
        attempt=None,
    )


class CertificateCollector(Collector):
    """Per-certificate series, kept as snapshots: a deleted resource or a changed domain
    leaves no stale series behind, and a scrape never sees half an update."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], CertificateSeries] = {}
        self._attempts: dict[tuple[str, str, str, str], int] = {}

    def observe(self, namespace: str, name: str, series: CertificateSeries) -> None:
        with self._lock:
            self._series[(namespace, name)] = series
            if series.attempt is not None:
                key = (namespace, name, *series.attempt)
                self._attempts[key] = self._attempts.get(key, 0) + 1

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._series.pop((namespace, name), None)
            for key in [k for k in self._attempts if k[:2] == (namespace, name)]:
                del self._attempts[key]

    def forget_all(self) -> None:
        with self._lock:
            self._series.clear()
            self._attempts.clear()

    def describe(self) -> Iterable[Metric]:
        return self._families({}, {})

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            series, attempts = dict(self._series), dict(self._attempts)
        return self._families(series, attempts)

    @staticmethod
    def _families(
        series: Mapping[tuple[str, str], CertificateSeries],
        attempts: Mapping[tuple[str, str, str, str], int],
    ) -> list[Metric]:
        expiration = GaugeMetricFamily(
            "certfleet_certificate_expiration_timestamp_seconds",
            "The date after which the certificate expires (notAfter), as a Unix time.",
            labels=_CERTIFICATE_LABELS,
        )
        renewal = GaugeMetricFamily(
            "certfleet_certificate_renewal_timestamp_seconds",
            "The time at which the certificate is due for renewal, as a Unix time.",
            labels=_CERTIFICATE_LABELS,
        )
        ready = GaugeMetricFamily(
            "certfleet_certificate_ready_status",
            "The Ready condition of the certificate: 1 for the current condition.",
            labels=(*_CERTIFICATE_LABELS, "condition"),
        )
        failed = GaugeMetricFamily(
            "certfleet_certificate_failed_issuance_attempts",
            "ACME issuances of the certificate that failed in a row (status).",
            labels=_CERTIFICATE_LABELS,
        )
        manual = GaugeMetricFamily(
            "certfleet_manual_renewal_required",
            "1 when a MANUAL certificate is due for renewal and needs a new Secret.",
            labels=_CERTIFICATE_LABELS,
        )
        published = InfoMetricFamily(
            "certfleet_certificate_published_serial",
            "The serial of the certificate published to the datastore.",
            labels=_CERTIFICATE_LABELS,
        )
        issuances = CounterMetricFamily(
            "certfleet_certificate_issuance_attempts",
            "ACME issuances attempted for the certificate, by result and reason.",
            labels=("namespace", "name", "result", "reason"),
        )
        for (namespace, name), one in sorted(series.items()):
            labels = [namespace, name, one.domain]
            if one.expiration is not None:
                expiration.add_metric(labels, one.expiration)
            if one.renewal is not None:
                renewal.add_metric(labels, one.renewal)
            for condition in CONDITIONS:
                ready.add_metric([*labels, condition], 1.0 if condition == one.ready else 0.0)
            failed.add_metric(labels, float(one.failed_issuance_attempts))
            manual.add_metric(labels, 1.0 if one.manual_renewal_required else 0.0)
            if one.serial is not None:
                published.add_metric(labels, {"serial": one.serial})
        for key, count in sorted(attempts.items()):
            issuances.add_metric(list(key), float(count))
        return [expiration, renewal, ready, failed, manual, published, issuances]


def _s3_result(status: int, error_code: str | None) -> str:
    # A few classes, not raw error codes: bounded label values, and what an alert needs.
    if status < 300:
        return "success"
    if status == 304:
        return "not_modified"
    if status == 404 or error_code in ("NoSuchKey", "NoSuchBucket"):
        return "not_found"
    if status in (409, 412):
        return "conflict"
    return "client_error" if status < 500 else "server_error"


class OperatorMetrics:
    """Everything the operator exports. Thread-safe: kopf runs handlers in threads."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.certificates = CertificateCollector()
        self.registry.register(self.certificates)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self._acme = Histogram(
            "certfleet_acme_client_request_duration_seconds",
            "Duration of the HTTP requests to ACME servers, by ACME operation.",
            ["operation"],
            buckets=ACME_BUCKETS,
            registry=self.registry,
        )
        self._datastore = Counter(
            "certfleet_datastore_operations",
            "S3 API calls to the datastores, by operation and result.",
            ["operation", "result"],
            registry=self.registry,
        )
        self._leader = Gauge(
            "certfleet_operator_leader",
            "1 while this replica acts (holds the Lease); standbys export 0.",
            registry=self.registry,
        )

    def set_leader(self, acting: bool) -> None:
        self._leader.set(1 if acting else 0)

    def record_reconciliation(
        self,
        namespace: str,
        name: str,
        domain: object,
        outcome: Outcome,
        status: CertificateStatus,
    ) -> None:
        """After the status patch: `status` is the status as it now stands."""
        series = certificate_series(domain if isinstance(domain, str) else "", outcome, status)
        self.certificates.observe(namespace, name, series)

    def record_status(
        self, namespace: str, name: str, domain: object, status: CertificateStatus
    ) -> None:
        """A resource taken as its status says, without a reconciliation (restart.py)."""
        series = series_from_status(domain if isinstance(domain, str) else "", status)
        self.certificates.observe(namespace, name, series)

    def forget(self, namespace: str, name: str) -> None:
        """The resource is gone: its series go too."""
        self.certificates.forget(namespace, name)

    def forget_all(self) -> None:
        """For a replica that stops acting: a standby must not export stale certificates."""
        self.certificates.forget_all()

    def acme_request(self, seconds: float, operation: str) -> None:
        """AcmeIssuer's on_request hook."""
        self._acme.labels(operation=operation).observe(seconds)

    def instrument_s3_client(self, client: Any) -> None:
        """Counts a boto3 S3 client's API calls through botocore's event hooks (once per
        call, after botocore's own retries), so the datastore code needs no metrics."""
        events = client.meta.events
        events.register("after-call.s3", self._s3_call)
        events.register("after-call-error.s3", self._s3_call_error)

    def _s3_call(self, http_response: Any, parsed: Any, event_name: str, **_: Any) -> None:
        error = parsed.get("Error", {}) if isinstance(parsed, Mapping) else {}
        result = _s3_result(int(http_response.status_code), error.get("Code"))
        self._datastore.labels(operation=event_name.rsplit(".", 1)[-1], result=result).inc()

    def _s3_call_error(self, event_name: str, **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        self._datastore.labels(operation=operation, result="connection_error").inc()

    def serve(self, host: str, port: int) -> WSGIServer:
        """Starts /metrics on a daemon thread; returns the server (shutdown() stops it)."""
        server, _thread = start_http_server(port, host, registry=self.registry)
        log.info("metrics on http://%s:%d/metrics", host, server.server_port)
        return server
