"""How long to wait between polls of an authorization or an order.

The CA's Retry-After wins (RFC 8555 7.5.1, 7.4); without one, the wait starts short and
doubles, so a fast CA (pebble: milliseconds) is not slowed down by a fixed 1 s sleep while a
slow one (Let's Encrypt: seconds) is not hammered.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from certfleet.core.clock import utc_now

FIRST_WAIT_SECONDS = 0.01
MAX_WAIT_SECONDS = 5.0
# A CA asking for more than this during an issuance is treated as asking for this: the
# deadline, not the header, bounds the whole wait.
MAX_RETRY_AFTER_SECONDS = 60.0


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
    """The waits between the polls of one resource."""

    def __init__(
        self, first: float = FIRST_WAIT_SECONDS, maximum: float = MAX_WAIT_SECONDS
    ) -> None:
        self._next = first
        self._maximum = maximum

    def next_wait(self, retry_after: float | None) -> float:
        own = self._next
        self._next = min(self._next * 2, self._maximum)
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER_SECONDS)
        return own
