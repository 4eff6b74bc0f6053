"""The Reporter port over Kubernetes: one resource's status patches, events and metrics."""

from __future__ import annotations

from typing import Any

import kopf

from certfleet.api.reasons import EventReason
from certfleet.api.status import CertificateStatus
from certfleet.controller.metrics import OperatorMetrics
from certfleet.controller.plan import Outcome
from certfleet.controller.report import events_to_post, issuing_status, status_from_outcome
from certfleet.core.clock import Clock
from certfleet.kube.gateway import KubernetesGateway


class KubeReporter:
    """For one reconciliation of one resource: built from its body as kopf handed it."""

    def __init__(
        self,
        gateway: KubernetesGateway,
        metrics: OperatorMetrics,
        body: kopf.Body,
        clock: Clock,
    ) -> None:
        self._gateway = gateway
        self._metrics = metrics
        self._body = body
        self._clock = clock
        self._namespace = body.metadata.namespace or ""
        self._name = body.metadata.name or ""
        self._generation = body.metadata.get("generation")
        self._raw: dict[str, Any] = dict(body.status)
        self.previous = CertificateStatus.from_dict(self._raw)

    def issuing(self, message: str) -> None:
        patch = issuing_status(self.previous, message, self._generation, self._clock())
        self._gateway.patch_certificate_status(self._namespace, self._name, patch)
        kopf.info(self._body, reason=EventReason.Issuing, message=message)

    def report(self, outcome: Outcome) -> None:
        status = status_from_outcome(outcome, self.previous, self._generation, self._clock())
        self._gateway.patch_certificate_status(self._namespace, self._name, status)
        self._metrics.record_reconciliation(
            self._namespace,
            self._name,
            self._body.spec.get("domain"),
            outcome,
            CertificateStatus.from_dict({**self._raw, **status}),
        )

    def post_events(self, outcome: Outcome) -> None:
        """Transitions only (``events_to_post``); after the resource's lock is released."""
        for event in events_to_post(outcome, self.previous):
            kopf.event(self._body, type=event.type, reason=event.reason, message=event.message)
