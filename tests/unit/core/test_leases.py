from __future__ import annotations

from datetime import UTC, datetime, timedelta

from certfleet.core.leases import LeaseState, may_take, still_leading

NOW = datetime(2030, 1, 1, tzinfo=UTC)
FIFTEEN = timedelta(seconds=15)


def test_a_free_or_own_lease_may_be_taken() -> None:
    assert may_take(LeaseState(None, None, FIFTEEN), "a", NOW)
    assert may_take(LeaseState("a", NOW, FIFTEEN), "a", NOW)


def test_a_live_holder_keeps_the_lease_until_it_expires() -> None:
    held = LeaseState("b", NOW, FIFTEEN)
    assert not may_take(held, "a", NOW + timedelta(seconds=14))
    assert may_take(held, "a", NOW + FIFTEEN)


def test_a_leader_stops_before_another_may_take_over() -> None:
    assert still_leading(NOW, FIFTEEN, NOW + timedelta(seconds=14))
    assert not still_leading(NOW, FIFTEEN, NOW + FIFTEEN)
