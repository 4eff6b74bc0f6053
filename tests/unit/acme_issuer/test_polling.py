from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from itertools import pairwise

import pytest

from certfleet.acme_issuer.polling import (
    FIRST_WAIT_SECONDS,
    GROWTH,
    MAX_RETRY_AFTER_SECONDS,
    MAX_WAIT_SECONDS,
    Backoff,
    parse_retry_after,
    poll_wait,
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


def _poll_times(count: int, schedule: Callable[[int], float] = poll_wait) -> list[float]:
    """When each poll happens (seconds after the CA was asked), without Retry-After."""
    times, now = [], 0.0
    for attempt in range(count):
        now += schedule(attempt)
        times.append(now)
    return times


def test_the_first_poll_comes_at_once_and_the_wait_grows_to_a_cap() -> None:
    backoff = Backoff()
    waits = [backoff.next_wait(None) for _ in range(40)]
    assert waits[0] == FIRST_WAIT_SECONDS <= 0.01  # pebble is done within milliseconds
    assert waits == sorted(waits)
    assert max(waits) == MAX_WAIT_SECONDS


def test_a_ca_done_at_any_moment_is_seen_within_half_again_that_time() -> None:
    # Whenever the CA finishes (between two polls), the next poll comes no later than 1.5x
    # that moment, plus the first wait: a doubling would cost up to 2x (a fast CA: 10 ms
    # of validation seen only after 30 ms).
    times = _poll_times(60)
    for before, after in pairwise(times):
        assert after <= GROWTH * before + FIRST_WAIT_SECONDS + 1e-9


def test_a_slow_ca_is_not_hammered() -> None:
    # Let's Encrypt can take 30 s to validate: about twenty polls in that time, no more.
    times = _poll_times(100)
    assert sum(1 for when in times if when <= 30.0) <= 25
    assert times[-1] > 300  # and the cap keeps the schedule going (5 s apart)


def test_the_schedule_is_pure() -> None:
    assert [poll_wait(n) for n in range(5)] == [poll_wait(n) for n in range(5)]
    with pytest.raises(ValueError, match="count from 0"):
        poll_wait(-1)
    assert poll_wait(10_000) == MAX_WAIT_SECONDS


def test_the_cas_retry_after_wins_but_is_bounded() -> None:
    backoff = Backoff()
    assert backoff.next_wait(2.0) == 2.0
    # "0" is not a tight loop: at least the first wait.
    assert backoff.next_wait(0.0) == FIRST_WAIT_SECONDS
    assert backoff.next_wait(86400.0) == MAX_RETRY_AFTER_SECONDS
    # The schedule kept counting while the CA chose: no restart from the shortest wait.
    assert backoff.next_wait(None) == poll_wait(3)
