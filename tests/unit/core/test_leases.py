"""Who may act, judged on each replica's own monotonic clock (client-go's observed time)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from certfleet.core.leases import (
    LeaseRecord,
    Observation,
    StorageLease,
    may_take,
    may_take_storage_lease,
    new_storage_lease,
    observe,
    still_leading,
)

FIFTEEN = 15.0


def held_by(holder: str | None, version: str = "1") -> LeaseRecord:
    return LeaseRecord(holder, FIFTEEN, version)


def test_a_free_or_own_lease_may_be_taken() -> None:
    assert may_take(Observation(held_by(None), 100.0), "a", 100.0)
    assert may_take(Observation(held_by("a"), 100.0), "a", 100.0)


def test_a_live_holder_keeps_the_lease_until_it_expires() -> None:
    seen = Observation(held_by("b"), 100.0)
    assert not may_take(seen, "a", 114.0)
    assert may_take(seen, "a", 115.0)


def test_a_holder_that_keeps_renewing_keeps_the_lease_whatever_its_clock_says() -> None:
    seen = observe(None, held_by("b", "1"), 100.0)
    for step, version in enumerate(("2", "3", "4"), start=1):
        seen = observe(seen, held_by("b", version), 100.0 + 10 * step)
        assert not may_take(seen, "a", 100.0 + 10 * step + 14)


def test_an_unchanged_record_ages_from_when_it_was_first_seen() -> None:
    first = observe(None, held_by("b"), 100.0)
    again = observe(first, held_by("b"), 110.0)
    assert again is first
    assert may_take(again, "a", 115.0)


def test_a_leader_stops_before_another_may_take_over() -> None:
    assert still_leading(100.0, 10.0, 109.9)
    assert not still_leading(100.0, 10.0, 110.0)


# -- the order lease in a shared datastore (wall-clock expiry) ------------------------------

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
TEN_MINUTES = timedelta(minutes=10)


def test_an_order_lease_is_free_when_absent_released_expired_or_own() -> None:
    held = new_storage_lease("build-a", T0, TEN_MINUTES)
    assert held.expires_at == T0 + TEN_MINUTES
    assert may_take_storage_lease(None, "build-b", T0)
    assert may_take_storage_lease(held, "build-a", T0)
    assert not may_take_storage_lease(held, "build-b", T0 + TEN_MINUTES - timedelta(seconds=1))
    assert may_take_storage_lease(held, "build-b", T0 + TEN_MINUTES)
    released = StorageLease("build-a", held.expires_at, released=True)
    assert may_take_storage_lease(released, "build-b", T0)


def test_an_order_lease_needs_a_positive_duration() -> None:
    with pytest.raises(ValueError, match="positive"):
        new_storage_lease("build-a", T0, timedelta(0))
