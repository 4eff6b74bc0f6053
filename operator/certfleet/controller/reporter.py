"""The Reporter port over Kubernetes: one resource's status patches, events and metrics.

A patch that would change nothing is not sent: a recheck of a healthy certificate finds what
the last reconciliation found, and writing it again costs the API server a write (and every
watcher an event) per certificate per recheck. "Nothing" is judged against the status the
reconciliation started from (its body), and only if the last patch this operator wrote to the
resource was the same one: a body read before that write, and so older than it, is not taken
for what the resource has now.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping
from typing import Any

import kopf

from certfleet.api.fleet import fleet_summary_patch
from certfleet.api.reasons import EventReason
from certfleet.api.status import CertificateStatus, changes_nothing, merge_patch
from certfleet.controller.metrics import OperatorMetrics
from certfleet.controller.plan import Outcome
from certfleet.controller.report import events_to_post, issuing_status, status_from_outcome
from certfleet.core.clock import Clock
from certfleet.kube.gateway import KubernetesGateway

Key = tuple[str, str]  # (namespace, name)


class WrittenPatches:
    """The digest of the last status patch written to each resource by this process (a
    digest, not the patch: 32 bytes a resource at any size)."""

    def __init__(self) -> None:
        self._digests: dict[Key, bytes] = {}
        self._guard = threading.Lock()

    def last(self, key: Key) -> bytes | None:
        with self._guard:
            return self._digests.get(key)

    def wrote(self, key: Key, patch: Mapping[str, Any]) -> None:
        with self._guard:
            self._digests[key] = digest(patch)

    def forget(self, namespace: str, name: str) -> None:
        with self._guard:
            self._digests.pop((namespace, name), None)


def digest(patch: Mapping[str, Any]) -> bytes:
    return hashlib.sha256(json.dumps(patch, sort_keys=True, default=str).encode()).digest()


class KubeReporter:
    """For one reconciliation of one resource: built from its body as kopf handed it (or as
    the renewal timer read it)."""

    def __init__(
        self,
        gateway: KubernetesGateway,
        metrics: OperatorMetrics,
        body: kopf.Body,
        clock: Clock,
        written: WrittenPatches | None = None,
    ) -> None:
        self._gateway = gateway
        self._metrics = metrics
        self._body = body
        self._clock = clock
        self._written = written if written is not None else WrittenPatches()
        self._namespace = body.metadata.namespace or ""
        self._name = body.metadata.name or ""
        self._generation = body.metadata.get("generation")
        self._raw: dict[str, Any] = dict(body.status)
        self.previous = CertificateStatus.from_dict(self._raw)

    def issuing(self, message: str) -> None:
        patch = issuing_status(self.previous, message, self._generation, self._clock())
        self._patch(patch)
        kopf.info(self._body, reason=EventReason.Issuing, message=message)

    def report(self, outcome: Outcome) -> None:
        status = status_from_outcome(outcome, self.previous, self._generation, self._clock())
        self._patch(status)
        self._metrics.record_reconciliation(
            self._namespace,
            self._name,
            self._body.spec.get("domain"),
            outcome,
            CertificateStatus.from_dict(self._raw),
        )

    def post_events(self, outcome: Outcome) -> None:
        """Transitions only (``events_to_post``); after the resource's lock is released."""
        for event in events_to_post(outcome, self.previous):
            kopf.event(self._body, type=event.type, reason=event.reason, message=event.message)

    def _patch(self, own: dict[str, Any]) -> None:
        # The fleet summary counts the nodes serving the current serial: said in the same
        # write as the serial (and in a new resource's first), not in a write of its own.
        # Only when out of date (summarise_fleet writes it too, after the agents' reports).
        summary = fleet_summary_patch(merge_patch(self._raw, own))
        patch = {**own, **summary} if summary is not None else own
        key = (self._namespace, self._name)
        last = self._written.last(key)
        unchanged = changes_nothing(self._raw, patch) and last in (None, digest(own))
        if not unchanged:
            self._gateway.patch_certificate_status(self._namespace, self._name, patch)
            self._written.wrote(key, own)
        # What the status is now, for the next patch of this reconciliation (an order's
        # "issuing" is followed by its outcome) and for the metrics.
        self._raw = merge_patch(self._raw, patch)
