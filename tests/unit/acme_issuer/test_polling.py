from __future__ import annotations

from datetime import UTC, datetime

import pytest

from certfleet.acme_issuer.polling import (
    FIRST_WAIT_SECONDS,
    MAX_RETRY_AFTER_SECONDS,
    MAX_WAIT_SECONDS,
    Backoff,
    parse_retry_after,
)

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("0", 0.0),
        ("3", 3.0),
        (" 120 ", 120.0),
        ("Sun, 01 Mar 2026 12:00:30 GMT", 30.0),
        ("Sun, 01 Mar 2026 13:00:00 +0100", 0.0),  # the same instant as NOW
        ("Sun, 01 Mar 2026 11:00:00 GMT", 0.0),  # in the past: no negative waits
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
    ],
)
def test_retry_after_is_delta_seconds_or_an_http_date(
    header: str | None, seconds: float | None
) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


def test_the_wait_starts_short_and_doubles_up_to_a_cap() -> None:
    backoff = Backoff()
    waits = [backoff.next_wait(None) for _ in range(20)]
    assert waits[0] == FIRST_WAIT_SECONDS
    assert waits[1] == FIRST_WAIT_SECONDS * 2
    assert max(waits) == MAX_WAIT_SECONDS
    assert waits == sorted(waits)


def test_the_cas_retry_after_wins_but_is_bounded() -> None:
    backoff = Backoff()
    assert backoff.next_wait(2.0) == 2.0
    assert backoff.next_wait(0.0) == 0.0
    assert backoff.next_wait(86400.0) == MAX_RETRY_AFTER_SECONDS
