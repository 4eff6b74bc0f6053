"""The agent's Prometheus metrics, on a registry of its own (tests read it directly).

    certfleet_agent_certificate_expiration_timestamp_seconds   notAfter of the served leaf
    certfleet_agent_last_successful_sync_timestamp_seconds     when the node last matched S3
    certfleet_agent_sync_errors_total{reason}                  failed syncs, by NodeReason
    certfleet_agent_reloads_total{result}                      success|test_failed|reload_failed
    certfleet_agent_served_serial_info{domain,serial}          the served serial, as an info
    certfleet_agent_polls_total{result}                        unchanged|changed|missing|error

Labels take reasons and serials only: nothing here can hold key material.
"""

from __future__ import annotations

from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Info

RELOAD_SUCCESS = "success"
RELOAD_TEST_FAILED = "test_failed"
RELOAD_FAILED = "reload_failed"


class AgentMetrics:
    def __init__(self, registry: CollectorRegistry, domain: str) -> None:
        self.registry = registry
        self._domain = domain
        self.expiration = Gauge(
            "certfleet_agent_certificate_expiration_timestamp_seconds",
            "notAfter of the certificate the webserver serves, as a Unix time.",
            registry=registry,
        )
        self.last_success = Gauge(
            "certfleet_agent_last_successful_sync_timestamp_seconds",
            "When the node last served what the datastore holds, as a Unix time.",
            registry=registry,
        )
        self.sync_errors = Counter(
            "certfleet_agent_sync_errors",
            "Failed syncs, by reason.",
            ["reason"],
            registry=registry,
        )
        self.reloads = Counter(
            "certfleet_agent_reloads",
            "Webserver reloads for a new certificate, by result.",
            ["result"],
            registry=registry,
        )
        self.served = Info(
            "certfleet_agent_served_serial",
            "The serial of the certificate the webserver serves.",
            registry=registry,
        )
        self.polls = Counter(
            "certfleet_agent_polls",
            "Conditional reads of the datastore pointer, by result.",
            ["result"],
            registry=registry,
        )

    def served_certificate(self, serial: str, not_after: datetime) -> None:
        self.served.info({"domain": self._domain, "serial": serial})
        self.expiration.set(not_after.timestamp())

    def sync_succeeded(self, when: datetime) -> None:
        self.last_success.set(when.timestamp())

    def sync_failed(self, reason: str) -> None:
        self.sync_errors.labels(reason=reason).inc()

    def reloaded(self, result: str) -> None:
        self.reloads.labels(result=result).inc()

    def polled(self, result: str) -> None:
        self.polls.labels(result=result).inc()
