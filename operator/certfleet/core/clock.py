"""Time as certfleet writes and reads it: the one UTC-now, and RFC 3339 in and out.

Pure apart from ``utc_now`` itself, which callers pass around as a clock so that nothing
below the edges reads the time on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The current time, timezone-aware UTC: the default clock of every edge."""
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    """``2026-12-01T20:30:00Z``: whole seconds, UTC, as Kubernetes writes timestamps."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"a timestamp needs a timezone, got naive {moment.isoformat()}")
    # isoformat, unlike strftime("%Y"), always writes four year digits.
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_rfc3339(value: object) -> datetime | None:
    """A timestamp read from a status or a file; None when it is not one (untrusted input)."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=parsed.tzinfo or UTC).astimezone(UTC)
