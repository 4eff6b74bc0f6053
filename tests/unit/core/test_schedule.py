"""The renewal timer's arithmetic: when to reconcile, how long to sleep (pure)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from certfleet.core.schedule import (
    UNKNOWN_RENEWAL_RECHECK_SECONDS,
    last_recheck_slot,
    recheck_phase,
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


def test_recheck_phases_spread_alike_names_over_the_interval() -> None:
    # Names as a fleet has them: alike but for a number.
    phases = [recheck_phase(f"shop/web-{i}", HOUR) for i in range(2000)]
    assert all(timedelta(0) <= phase < HOUR for phase in phases)
    assert phases == [recheck_phase(f"shop/web-{i}", HOUR) for i in range(2000)], "stable"
    # Every tenth of the hour gets about a tenth of them (binomial: 200 +- 9 sigma is 126).
    tenths = [0] * 10
    for phase in phases:
        tenths[phase * 10 // HOUR] += 1
    assert min(tenths) > 120 and max(tenths) < 280, tenths
    assert len(set(phases)) > 1990


def test_a_phase_fits_any_interval() -> None:
    assert recheck_phase("shop/web", timedelta(0)) == timedelta(0)
    assert timedelta(0) <= recheck_phase("shop/web", timedelta(seconds=1)) < timedelta(seconds=1)


@pytest.mark.parametrize("minutes", [0, 1, 17, 59, 60, 61, 60 * 24 * 400 + 7])
def test_the_last_recheck_slot_keeps_the_phase_and_the_next_is_within_the_interval(
    minutes: int,
) -> None:
    phase = timedelta(minutes=23, seconds=5)
    now = NOW + timedelta(minutes=minutes, microseconds=3)
    slot = last_recheck_slot(now, phase, HOUR)
    assert now - HOUR < slot <= now
    assert now < slot + HOUR <= now + HOUR, "the next recheck is never later than the interval"
    # Every slot is the same phase into its hour (counted from the epoch): across restarts too.
    assert (slot - datetime(1970, 1, 1, tzinfo=slot.tzinfo)) % HOUR == phase
    assert last_recheck_slot(slot, phase, HOUR) == slot
    assert last_recheck_slot(slot + HOUR - timedelta(microseconds=1), phase, HOUR) == slot


def test_resources_started_together_are_rechecked_apart() -> None:
    # What the timers do: a recheck one interval after each resource's last slot, not one
    # interval after the operator started (which made every resource's recheck one burst).
    nexts = {
        last_recheck_slot(NOW, recheck_phase(f"shop/web-{i}", HOUR), HOUR) + HOUR
        for i in range(100)
    }
    assert len(nexts) == 100
    assert max(nexts) - min(nexts) > HOUR * 0.9
    assert all(NOW < moment <= NOW + HOUR for moment in nexts)
