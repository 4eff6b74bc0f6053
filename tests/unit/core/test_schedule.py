"""The renewal timer's arithmetic: when to reconcile, how long to sleep (pure)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from certfleet.core.schedule import (
    UNKNOWN_RENEWAL_RECHECK_SECONDS,
    seconds_after_reconciliation,
    seconds_until_due,
)
from unit.core.certificates import NOW

HOUR = timedelta(hours=1)


@pytest.mark.parametrize(
    ("sentence", "renewal", "last_check", "expected"),
    [
        ("no renewal time yet: look again soon", None, NOW, UNKNOWN_RENEWAL_RECHECK_SECONDS),
        ("renewal time reached: reconcile now", NOW, NOW, None),
        ("renewal time passed: reconcile now", NOW - HOUR, NOW, None),
        ("recheck interval passed: reconcile now", NOW + 5 * HOUR, NOW - HOUR, None),
        (
            "renewal before the recheck: sleep until it",
            NOW + 600 * timedelta(seconds=1),
            NOW,
            600.0,
        ),
        ("recheck before the renewal: sleep until it", NOW + 5 * HOUR, NOW - HOUR / 2, 1800.0),
    ],
)
def test_seconds_until_due(
    sentence: str, renewal: datetime | None, last_check: datetime, expected: float | None
) -> None:
    assert seconds_until_due(NOW, renewal, last_check, HOUR) == expected, sentence


@pytest.mark.parametrize(
    ("sentence", "retry_after", "renew_at", "expected"),
    [
        ("a retry delay wins", 30.0, NOW + 5 * HOUR, 30.0),
        ("a negative retry delay is no delay", -1.0, None, 0.0),
        ("until the renewal time", None, NOW + timedelta(minutes=10), 600.0),
        ("never longer than the recheck", None, NOW + 5 * HOUR, 3600.0),
        ("a renewal time in the past: at once", None, NOW - HOUR, 0.0),
        ("nothing known: the recheck (no busy loop)", None, None, 3600.0),
    ],
)
def test_seconds_after_reconciliation(
    sentence: str, retry_after: float | None, renew_at: datetime | None, expected: float
) -> None:
    assert seconds_after_reconciliation(NOW, retry_after, renew_at, HOUR) == expected, sentence
