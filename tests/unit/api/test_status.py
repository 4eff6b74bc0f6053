"""The typed status: parsed once from untrusted input, conditions written back as they were."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from certfleet.api.status import CertificateStatus, Condition, condition

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)


def test_a_full_status_is_read() -> None:
    status = CertificateStatus.from_dict(
        {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Issued",
                    "message": "issued",
                    "lastTransitionTime": "2030-06-01T11:00:00Z",
                    "observedGeneration": 3,
                },
                {"type": "Issuing", "status": "False", "reason": "Idle", "message": ""},
            ],
            "failedIssuanceAttempts": 2,
            "serialNumber": "0a1b",
            "notAfter": "2030-09-01T00:00:00Z",
            "renewalTime": "2030-08-25T00:00:00Z",
        }
    )
    assert status.ready == Condition("Ready", True, "Issued", "issued", "2030-06-01T11:00:00Z", 3)
    assert status.issuing is not None and not status.issuing.status
    assert status.failed_issuance_attempts == 2
    assert status.serial == "0a1b"
    assert status.not_after == datetime(2030, 9, 1, tzinfo=UTC)
    assert status.renewal_time == datetime(2030, 8, 25, tzinfo=UTC)


@pytest.mark.parametrize(
    "raw",
    [
        None,
        {},
        {"conditions": "Ready"},
        {"conditions": [7, {"type": "Ready", "lastTransitionTime": "soon"}]},
        {"failedIssuanceAttempts": "many", "serialNumber": 7, "notAfter": "never"},
        {"failedIssuanceAttempts": True, "serialNumber": "f" * 65, "renewalTime": 3},
        {"failedIssuanceAttempts": -4},
    ],
)
def test_odd_values_read_as_absent(raw: Any) -> None:
    status = CertificateStatus.from_dict(raw)
    assert status.failed_issuance_attempts == 0
    assert status.serial is None and status.not_after is None and status.renewal_time is None
    if status.ready is not None:
        assert status.ready.last_transition is None


def test_the_transition_time_moves_only_when_the_status_flips() -> None:
    first = condition(None, "Ready", False, "Waiting", "w", 1, NOW)
    same = condition(first, "Ready", False, "Other", "o", 2, NOW + timedelta(hours=1))
    flipped = condition(same, "Ready", True, "Issued", "i", 2, NOW + timedelta(hours=2))
    assert first.last_transition == same.last_transition == "2030-06-01T12:00:00Z"
    assert flipped.last_transition == "2030-06-01T14:00:00Z"
    assert flipped.to_dict() == {
        "type": "Ready",
        "status": "True",
        "reason": "Issued",
        "message": "i",
        "lastTransitionTime": "2030-06-01T14:00:00Z",
        "observedGeneration": 2,
    }


def test_a_huge_message_is_cut() -> None:
    raw = {"conditions": [{"type": "Ready", "status": "True", "message": "x" * 100_000}]}
    ready = CertificateStatus.from_dict(raw).ready
    assert ready is not None and len(ready.message) == 32 * 1024


def test_the_datastore_revision_is_the_highest_seen_at_its_location() -> None:
    status = CertificateStatus.from_dict({"datastore": {"uri": "s3://b/p/", "revision": 12}})
    assert (status.datastore_uri, status.datastore_revision) == ("s3://b/p/", 12)


@pytest.mark.parametrize(
    "datastore",
    [
        None,
        "s3://b/",
        {"revision": "12"},
        {"revision": True},
        {"revision": -3},
        {"revision": 2**53},
    ],
)
def test_an_odd_datastore_revision_reads_as_none_seen(datastore: object) -> None:
    assert CertificateStatus.from_dict({"datastore": datastore}).datastore_revision == 0
