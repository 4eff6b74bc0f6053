"""Step four: a reconciliation's Outcome as a status merge patch and events (pure: the clock
is passed in). The previous status comes typed (``api.status``), parsed once by the caller."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from certfleet.api.reasons import ISSUING, READY, CertificateReason, IssuingReason
from certfleet.api.status import CertificateStatus, condition
from certfleet.controller.plan import Event, Outcome
from certfleet.core.clock import rfc3339


def issuing_status(
    previous: CertificateStatus, message: str, generation: int | None, now: datetime
) -> dict[str, Any]:
    """The patch said while an ACME order is under way (a merge patch replaces the whole
    conditions list, so Ready goes along unchanged)."""
    issuing = condition(
        previous.issuing, ISSUING, True, IssuingReason.Ordering, message, generation, now
    )
    kept = [previous.ready.to_dict()] if previous.ready is not None else []
    return {"conditions": [*kept, issuing.to_dict()]}


def status_from_outcome(
    outcome: Outcome, previous: CertificateStatus, generation: int | None, now: datetime
) -> dict[str, Any]:
    ready = condition(
        previous.ready, READY, outcome.ready, outcome.reason, outcome.message, generation, now
    )
    issuing = condition(
        previous.issuing,
        ISSUING,
        False,
        IssuingReason.IssuanceFailed if outcome.issuance_failed else IssuingReason.Idle,
        outcome.message if outcome.issuance_failed else "no ACME order under way",
        generation,
        now,
    )
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": [ready.to_dict(), issuing.to_dict()],
    }
    if outcome.issuance_failed:
        status["failedIssuanceAttempts"] = previous.failed_issuance_attempts + 1
        status["lastFailureTime"] = rfc3339(now)
        status["lastFailureReason"] = outcome.reason
    elif outcome.reason == CertificateReason.Issued:
        status["failedIssuanceAttempts"] = 0
    if outcome.facts is not None:
        facts = outcome.facts
        status.update(
            notBefore=rfc3339(facts.not_before),
            notAfter=rfc3339(facts.not_after),
            serialNumber=facts.serial,
            sha256Fingerprint=facts.sha256,
            dnsNames=list(facts.dns_names),
        )
    if outcome.renew_at is not None:
        status["renewalTime"] = rfc3339(outcome.renew_at)
    if outcome.datastore_uri is not None:
        status["datastore"] = {"uri": outcome.datastore_uri, "revision": outcome.revision}
    if outcome.cache_secret is not None:
        status["cacheSecretName"] = outcome.cache_secret
    if outcome.issued_by is not None:
        server, position = outcome.issued_by
        status["issuedBy"] = {"server": server, "position": position}
    elif outcome.reason == CertificateReason.ManualCertificateAccepted:
        status["issuedBy"] = None  # a person's certificate: no ACME server issued it
    return status


def events_to_post(outcome: Outcome, previous: CertificateStatus) -> tuple[Event, ...]:
    """Events for transitions only: an outcome that repeats the Ready condition already in the
    status (waiting for a Secret, renewal due on a MANUAL certificate) was announced before;
    posting it again at every poll would bury what changed."""
    ready = previous.ready
    repeated = (
        ready is not None
        and ready.status == outcome.ready
        and ready.reason == outcome.reason
        and ready.message == outcome.message
    )
    return () if repeated else outcome.events
