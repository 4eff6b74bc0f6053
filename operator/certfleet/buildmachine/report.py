"""What a build machine's run tells: a line per certificate, the statuses as a JSON file (the
same status a cluster's `kubectl get mcert -o json` shows), and a Prometheus textfile.

The status file is read back at the next run: the count of failed issuances in a row and
when the next attempt is due (the back-off, buildmachine.backoff) carry over from one cron run
to the next, as they do in a cluster.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

from certfleet.api.reasons import CertificateReason
from certfleet.api.status import CertificateStatus
from certfleet.buildmachine.backoff import ENTRY_KEY, HeldBack, backoff_entry, held_back
from certfleet.buildmachine.documents import CertificateDocument
from certfleet.buildmachine.files import FilesError, read_bounded, write_atomically
from certfleet.controller.metrics import CertificateCollector, certificate_series
from certfleet.controller.plan import Outcome
from certfleet.controller.report import status_from_outcome
from certfleet.core.clock import Clock, rfc3339

MAX_STATUS_BYTES = 16 * 1024 * 1024
# Outcomes that need nobody: anything else makes the run fail, so cron mails a person.
GOOD_REASONS = frozenset(
    {
        CertificateReason.Issued,
        CertificateReason.Reused,
        CertificateReason.RestoredFromCache,
        CertificateReason.ManualCertificateAccepted,
    }
)


def is_good(outcome: Outcome) -> bool:
    return outcome.ready and not outcome.issuance_failed and outcome.reason in GOOD_REASONS


def one_line(text: str) -> str:
    return " ".join(text.split())


def read_entries(path: Path) -> dict[str, dict[str, Any]]:
    """The last run's entries by "namespace/name" (each with its "status"); empty when there
    was none (a damaged file is started afresh rather than stopping every renewal)."""
    try:
        data = read_bounded(path, MAX_STATUS_BYTES)
        loaded = json.loads(data) if data else {}
    except (FilesError, ValueError):
        return {}
    certificates = loaded.get("certificates") if isinstance(loaded, dict) else None
    if not isinstance(certificates, dict):
        return {}
    return {
        key: value
        for key, value in certificates.items()
        if isinstance(value, dict) and isinstance(value.get("status"), dict)
    }


class RunReport:
    """Collects every certificate's outcome of one run; written once at the end."""

    def __init__(self, clock: Clock, previous: Mapping[str, dict[str, Any]]) -> None:
        self._clock = clock
        self._previous = previous
        self._entries: dict[str, dict[str, Any]] = {}
        self.registry = CollectorRegistry()
        self._certificates = CertificateCollector()
        self.registry.register(self._certificates)
        self._last_run = Gauge(
            "certfleet_build_machine_last_run_timestamp_seconds",
            "When `certfleet reconcile` last ran, as a Unix time.",
            registry=self.registry,
        )
        self._success = Gauge(
            "certfleet_build_machine_last_run_success",
            "1 when every certificate of the last run needed nobody.",
            registry=self.registry,
        )

    def _previous_status(self, certificate: CertificateDocument) -> dict[str, Any]:
        status: dict[str, Any] = self._previous.get(certificate.key, {}).get("status", {})
        return status

    def previous(self, certificate: CertificateDocument) -> CertificateStatus:
        return CertificateStatus.from_dict(self._previous_status(certificate))

    def held_back(self, certificate: CertificateDocument, cap_seconds: float) -> HeldBack | None:
        """The last run's back-off, if it still holds for this certificate's spec."""
        entry = self._previous.get(certificate.key, {}).get(ENTRY_KEY)
        return held_back(entry, certificate.raw_spec, self._clock(), cap_seconds)

    def record(self, certificate: CertificateDocument, outcome: Outcome) -> None:
        now = self._clock()
        status = status_from_outcome(outcome, self.previous(certificate), None, now)
        merged = {**self._previous_status(certificate), **status}
        entry: dict[str, Any] = {"domain": certificate.spec.domain, "status": merged}
        if outcome.issuance_failed and outcome.retry_after is not None:
            entry[ENTRY_KEY] = backoff_entry(outcome.retry_after, now, certificate.raw_spec)
        self._entries[certificate.key] = entry
        self._observe(certificate, outcome, merged)

    def keep(self, certificate: CertificateDocument, outcome: Outcome) -> None:
        """A certificate this run left alone (its back-off holds): its entry stays as it was."""
        previous = self._previous.get(certificate.key, {})
        self._entries[certificate.key] = {**previous, "domain": certificate.spec.domain}
        self._observe(certificate, outcome, self._previous_status(certificate))

    def _observe(
        self, certificate: CertificateDocument, outcome: Outcome, status: dict[str, Any]
    ) -> None:
        series = certificate_series(
            certificate.spec.domain, outcome, CertificateStatus.from_dict(status)
        )
        self._certificates.observe(certificate.namespace, certificate.name, series)

    def write(self, status_file: Path, metrics_textfile: Path | None, success: bool) -> None:
        document = {"generatedAt": rfc3339(self._clock()), "certificates": self._entries}
        try:  # a first run that cached nothing has no runtimedata folder yet
            status_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as error:
            raise FilesError(f"cannot make {status_file.parent}: {error.strerror}") from None
        write_atomically(status_file, json.dumps(document, indent=2).encode() + b"\n", 0o644)
        if metrics_textfile is not None:
            self._last_run.set(time.time())
            self._success.set(1 if success else 0)
            try:  # a temporary file renamed over the old one, as the textfile collector wants
                write_to_textfile(str(metrics_textfile), self.registry)
            except OSError as error:
                raise FilesError(f"cannot write {metrics_textfile}: {error.strerror}") from None
