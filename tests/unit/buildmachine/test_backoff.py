"""The issuance back-off across cron runs: when the next order may be placed (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from certfleet.buildmachine.backoff import backoff_entry, held_back, spec_digest
from certfleet.core.clock import rfc3339

NOW = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
SPEC = {"domain": "www.example.com", "acme": {"server": "https://ca.example/dir"}}
CAP = 6 * 3600.0


def test_a_failed_order_holds_the_next_until_its_back_off_passed() -> None:
    entry = backoff_entry(120, NOW, SPEC)
    assert entry["nextAttempt"] == "2026-12-01T03:02:00Z"
    held = held_back(entry, SPEC, NOW + timedelta(seconds=30), CAP)
    assert held is not None and held.remaining_seconds == 90
    assert "next attempt at 2026-12-01T03:02:00Z (in 90 s)" in held.message(3)
    assert "3 failed issuances in a row" in held.message(3)
    assert held_back(entry, SPEC, NOW + timedelta(seconds=120), CAP) is None


def test_another_spec_is_not_held() -> None:
    entry = backoff_entry(120, NOW, SPEC)
    fixed = {**SPEC, "acme": {"server": "https://other.example/dir"}}
    assert held_back(entry, fixed, NOW, CAP) is None
    # The digest is of the content, not of the key order YAML gave it in.
    assert spec_digest(dict(reversed(list(SPEC.items())))) == spec_digest(SPEC)


def test_a_time_far_ahead_is_bounded_by_the_cap() -> None:
    entry = {"nextAttempt": rfc3339(NOW + timedelta(days=365)), "specSha256": spec_digest(SPEC)}
    held = held_back(entry, SPEC, NOW, CAP)
    assert held is not None and held.remaining_seconds == CAP


def test_a_damaged_entry_holds_nothing() -> None:
    for entry in (None, "soon", {"nextAttempt": 7, "specSha256": spec_digest(SPEC)}, {}):
        assert held_back(entry, SPEC, NOW, CAP) is None
