"""The agent's Prometheus metrics, on a registry of its own (tests read it directly). One
endpoint for every certificate the agent serves: the per-certificate series carry `domain`.

    certfleet_agent_certificate_expiration_timestamp_seconds{domain}  notAfter of the served leaf
    certfleet_agent_last_successful_sync_timestamp_seconds{domain}    when it last matched S3
    certfleet_agent_sync_errors_total{domain,reason}                  failed syncs, by NodeReason
    certfleet_agent_reloads_total{result}          one per webserver reload (a batch of changes)
    certfleet_agent_served_serial_info{domain,serial}                 the served serial
    certfleet_agent_polls_total{domain,result}     unchanged|changed|missing|error

Labels take domains, reasons and serials only: nothing here can hold key material.
"""

from __future__ import annotations

from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Info

RELOAD_SUCCESS = "success"
RELOAD_TEST_FAILED = "test_failed"
RELOAD_FAILED = "reload_failed"


class AgentMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.expiration = Gauge(
            "certfleet_agent_certificate_expiration_timestamp_seconds",
            "notAfter of the certificate the webserver serves, as a Unix time.",
            ["domain"],
            registry=registry,
        )
        self.last_success = Gauge(
            "certfleet_agent_last_successful_sync_timestamp_seconds",
            "When the node last served what the datastore holds, as a Unix time.",
            ["domain"],
            registry=registry,
        )
        self.sync_errors = Counter(
            "certfleet_agent_sync_errors",
            "Failed syncs, by reason.",
            ["domain", "reason"],
            registry=registry,
        )
        self.reloads = Counter(
            "certfleet_agent_reloads",
            "Webserver reloads for a batch of new certificates, by result.",
            ["result"],
            registry=registry,
        )
        self.served = Info(
            "certfleet_agent_served_serial",
            "The serial of the certificate the webserver serves.",
            ["domain"],
            registry=registry,
        )
        self.polls = Counter(
            "certfleet_agent_polls",
            "Conditional reads of the datastore pointer, by result.",
            ["domain", "result"],
            registry=registry,
        )

    def for_domain(self, domain: str) -> DomainMetrics:
        return DomainMetrics(self, domain)

    def reloaded(self, result: str) -> None:
        self.reloads.labels(result=result).inc()


class DomainMetrics:
    """The series of one certificate."""

    def __init__(self, metrics: AgentMetrics, domain: str) -> None:
        self._metrics = metrics
        self.domain = domain

    def served_certificate(self, serial: str, not_after: datetime) -> None:
        self._metrics.served.labels(domain=self.domain).info({"serial": serial})
        self._metrics.expiration.labels(domain=self.domain).set(not_after.timestamp())

    def sync_succeeded(self, when: datetime) -> None:
        self._metrics.last_success.labels(domain=self.domain).set(when.timestamp())

    def sync_failed(self, reason: str) -> None:
        self._metrics.sync_errors.labels(domain=self.domain, reason=reason).inc()

    def polled(self, result: str) -> None:
        self._metrics.polls.labels(domain=self.domain, result=result).inc()
