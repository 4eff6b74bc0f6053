"""A ManagedCertificate's status, typed: parsed once from what the API server returns, and
written once as a merge patch (pure).

Whatever is read back is untrusted (anyone with status rights can write it): every field is
type-checked and bounded here, so the operator, its renewal timer and its metrics all work
on the same parsed values instead of each parsing strings again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from certfleet.api.reasons import ISSUING, READY
from certfleet.core.clock import parse_rfc3339, rfc3339

_MAX_TEXT = 32 * 1024  # a condition message is a sentence, not a document


@dataclass(frozen=True, slots=True)
class Condition:
    type: str
    status: bool
    reason: str
    message: str
    last_transition: str | None = None  # kept as written: it is only ever copied forward
    observed_generation: int | None = None

    def to_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "type": self.type,
            "status": "True" if self.status else "False",
            "reason": self.reason,
            "message": self.message,
            "lastTransitionTime": self.last_transition,
        }
        if self.observed_generation is not None:
            found["observedGeneration"] = self.observed_generation
        return found


@dataclass(frozen=True, slots=True)
class CertificateStatus:
    """What the operator knows from a resource's status; every field may be absent."""

    ready: Condition | None = None
    issuing: Condition | None = None
    failed_issuance_attempts: int = 0
    serial: str | None = None
    not_after: datetime | None = None
    renewal_time: datetime | None = None
    # status.datastore: the highest revision this resource has published or accepted at
    # that location (revisions only grow), so a lower pointer there is a rollback.
    datastore_uri: str | None = None
    datastore_revision: int = 0

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> CertificateStatus:
        raw = raw if isinstance(raw, Mapping) else {}
        serial = raw.get("serialNumber")
        return cls(
            ready=_condition(raw, READY),
            issuing=_condition(raw, ISSUING),
            failed_issuance_attempts=_count(raw.get("failedIssuanceAttempts")),
            serial=serial if isinstance(serial, str) and 0 < len(serial) <= 64 else None,
            not_after=parse_rfc3339(raw.get("notAfter")),
            renewal_time=parse_rfc3339(raw.get("renewalTime")),
            datastore_uri=_uri(raw.get("datastore")),
            datastore_revision=_revision(raw.get("datastore")),
        )


def condition(
    previous: Condition | None,
    type_: str,
    status: bool,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime,
) -> Condition:
    """A Kubernetes-style condition; lastTransitionTime moves only when the status flips."""
    since = rfc3339(now)
    if previous is not None and previous.status == status and previous.last_transition:
        since = previous.last_transition
    return Condition(type_, status, reason, message, since, generation)


def _condition(raw: Mapping[str, Any], type_: str) -> Condition | None:
    items = raw.get("conditions")
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, Mapping) or item.get("type") != type_:
            continue
        status = item.get("status")
        since = item.get("lastTransitionTime")
        generation = item.get("observedGeneration")
        return Condition(
            type_,
            status == "True",
            _text(item.get("reason")),
            _text(item.get("message")),
            since if isinstance(since, str) and parse_rfc3339(since) else None,
            generation if isinstance(generation, int) else None,
        )
    return None


def _text(value: object) -> str:
    return value[:_MAX_TEXT] if isinstance(value, str) else ""


def _uri(datastore: object) -> str | None:
    value = datastore.get("uri") if isinstance(datastore, Mapping) else None
    return value if isinstance(value, str) and 0 < len(value) <= 2048 else None


def _revision(datastore: object) -> int:
    value = datastore.get("revision") if isinstance(datastore, Mapping) else None
    # Bounded as revisions are (JSON-exact integers).
    return _count(value) if _count(value) <= 2**53 - 1 else 0


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def merge_patch(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """`target` with a JSON merge patch (RFC 7386) applied, as the API server applies it:
    objects merge, a null removes, anything else (lists too) replaces."""
    result = dict(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping):
            before = result.get(key)
            result[key] = merge_patch(before if isinstance(before, Mapping) else {}, value)
        else:
            result[key] = value
    return result


def changes_nothing(current: Mapping[str, Any], patch: Mapping[str, Any]) -> bool:
    """Whether a status merge patch would leave `current` as it is. Timestamps are compared as
    written: a condition's lastTransitionTime moves only when its status flips (``condition``),
    so a reconciliation that finds what the last one found writes the same patch."""
    return merge_patch(current, patch) == dict(current)
