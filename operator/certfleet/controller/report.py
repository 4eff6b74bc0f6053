"""ManagedCertificate status from a reconciliation's outcome (pure: the clock is passed in)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from certfleet.controller.reconciler import Event, Outcome
from certfleet.core.clock import rfc3339


def condition(
    previous: Mapping[str, Any] | None,
    type_: str,
    status: bool,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime,
) -> dict[str, Any]:
    """A Kubernetes-style condition; lastTransitionTime moves only when the status flips."""
    value = "True" if status else "False"
    since = rfc3339(now)
    if previous and previous.get("status") == value and previous.get("lastTransitionTime"):
        since = str(previous["lastTransitionTime"])
    found: dict[str, Any] = {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
    }
    if generation is not None:
        found["observedGeneration"] = generation
    return found


def _previous_condition(status: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for item in status.get("conditions") or []:
        if isinstance(item, Mapping) and item.get("type") == type_:
            return item
    return None


def issuing_status(
    previous: Mapping[str, Any], message: str, generation: int | None, now: datetime
) -> dict[str, Any]:
    """The patch said while an ACME order is under way."""
    return {
        "conditions": [
            *[c for c in previous.get("conditions") or [] if c.get("type") != "Issuing"],
            condition(
                _previous_condition(previous, "Issuing"),
                "Issuing",
                True,
                "Ordering",
                message,
                generation,
                now,
            ),
        ]
    }


def status_from_outcome(
    outcome: Outcome, previous: Mapping[str, Any], generation: int | None, now: datetime
) -> dict[str, Any]:
    ready = condition(
        _previous_condition(previous, "Ready"),
        "Ready",
        outcome.ready,
        outcome.reason,
        outcome.message,
        generation,
        now,
    )
    issuing_reason = "IssuanceFailed" if outcome.issuance_failed else "Idle"
    issuing = condition(
        _previous_condition(previous, "Issuing"),
        "Issuing",
        False,
        issuing_reason,
        outcome.message if outcome.issuance_failed else "no ACME order under way",
        generation,
        now,
    )
    status: dict[str, Any] = {"observedGeneration": generation, "conditions": [ready, issuing]}
    failures = int(previous.get("failedIssuanceAttempts") or 0)
    if outcome.issuance_failed:
        status["failedIssuanceAttempts"] = failures + 1
        status["lastFailureTime"] = rfc3339(now)
        status["lastFailureReason"] = outcome.reason
    elif outcome.reason == "Issued":
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
    return status


def events_to_post(outcome: Outcome, previous: Mapping[str, Any]) -> tuple[Event, ...]:
    """Events for transitions only: an outcome that repeats the Ready condition already in the
    status (waiting for a Secret, renewal due on a MANUAL certificate) was announced before;
    posting it again at every poll would bury what changed."""
    ready = _previous_condition(previous, "Ready") or {}
    repeated = (
        ready.get("status") == ("True" if outcome.ready else "False")
        and ready.get("reason") == outcome.reason
        and ready.get("message") == outcome.message
    )
    return () if repeated else outcome.events
