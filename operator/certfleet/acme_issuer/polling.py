"""How long to wait between polls of an authorization or an order.

The CA's Retry-After wins (RFC 8555 7.5.1, 7.4); without one, the wait starts short and
grows, so a fast CA (pebble: milliseconds) is not slowed down by a fixed 1 s sleep while a
slow one (Let's Encrypt: seconds) is not hammered. `poll_wait` is the pure schedule.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from certfleet.core.clock import utc_now

# The first poll comes almost at once: pebble validates or signs in a few milliseconds, and
# a CA that is slower only costs a few extra polls. Each wait is then half as long again as
# the one before (not twice: a doubling overshoots the moment the CA is done by up to the
# whole time waited so far), up to a cap, so a slow CA (Let's Encrypt: seconds) is polled
# about as often as with a doubling after the first second.
FIRST_WAIT_SECONDS = 0.005
GROWTH = 1.5
MAX_WAIT_SECONDS = 5.0
# A CA asking for more than this during an issuance is treated as asking for this: the
# deadline, not the header, bounds the whole wait.
MAX_RETRY_AFTER_SECONDS = 60.0


def poll_wait(attempt: int, retry_after: float | None = None) -> float:
    """Seconds to wait before poll number `attempt` (0: the first) of one resource: the CA's
    Retry-After when it sent one (never below the first wait, so a "0" cannot make a tight
    loop, and never above MAX_RETRY_AFTER_SECONDS), else the growing schedule."""
    if attempt < 0:
        raise ValueError(f"a poll attempt is a count from 0, got {attempt}")
    if retry_after is not None:
        return min(max(retry_after, FIRST_WAIT_SECONDS), MAX_RETRY_AFTER_SECONDS)
    # min() of the exponent keeps a very long poll from overflowing a float.
    return min(FIRST_WAIT_SECONDS * GROWTH ** min(attempt, 64), MAX_WAIT_SECONDS)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or an HTTP-date), None if absent
    or unreadable; never negative."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; parsedate leaves "-0000" naive
        when = when.replace(tzinfo=UTC)
    current = now or utc_now()
    return max(0.0, (when - current).total_seconds())


class Backoff:
    """The waits between the polls of one resource (`poll_wait`, counting the polls)."""

    def __init__(self) -> None:
        self._attempt = 0

    def next_wait(self, retry_after: float | None) -> float:
        wait = poll_wait(self._attempt, retry_after)
        self._attempt += 1
        return wait
