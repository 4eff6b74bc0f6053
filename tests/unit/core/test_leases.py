"""Who may act, judged on each replica's own monotonic clock (client-go's observed time)."""

from __future__ import annotations

from certfleet.core.leases import LeaseRecord, Observation, may_take, observe, still_leading

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
