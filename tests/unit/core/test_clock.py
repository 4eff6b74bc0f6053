"""The one clock and the one RFC 3339 format."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from certfleet.core.clock import parse_rfc3339, rfc3339, utc_now

PLUS_ONE = timezone(timedelta(hours=1))


def test_utc_now_is_aware_utc() -> None:
    now = utc_now()
    assert now.tzinfo is UTC


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2026, 12, 1, 20, 30, 5, 999999, tzinfo=UTC), "2026-12-01T20:30:05Z"),
        (
            datetime(2026, 12, 1, 21, 30, tzinfo=timezone(timedelta(hours=1))),
            "2026-12-01T20:30:00Z",
        ),
    ],
)
def test_rfc3339_writes_whole_seconds_in_utc(moment: datetime, text: str) -> None:
    assert rfc3339(moment) == text


def test_rfc3339_refuses_a_naive_time() -> None:
    with pytest.raises(ValueError, match="naive"):
        rfc3339(datetime(2026, 12, 1))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-12-01T20:30:05Z", datetime(2026, 12, 1, 20, 30, 5, tzinfo=UTC)),
        ("2026-12-01T21:30:05+01:00", datetime(2026, 12, 1, 20, 30, 5, tzinfo=UTC)),
        ("2026-12-01T20:30:05", datetime(2026, 12, 1, 20, 30, 5, tzinfo=UTC)),
        ("yesterday", None),
        ("", None),
        (None, None),
        (12, None),
        ("2026-12-01T20:30:05Z" + " " * 100, None),
    ],
)
def test_parse_rfc3339_reads_untrusted_values(value: object, expected: datetime | None) -> None:
    assert parse_rfc3339(value) == expected


def test_round_trip() -> None:
    moment = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_rfc3339(rfc3339(moment)) == moment
