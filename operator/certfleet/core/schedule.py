"""When the renewal timer of a certificate wakes up next (pure: the clock is an argument).

Each certificate has a timer that sleeps until its renewal time or until its next recheck,
whichever comes first: a recheck is a reconciliation that asks the CA's renewal information
again (a revocation can move the renewal earlier) and notices clock jumps.

Each certificate's rechecks keep their own phase in the interval (from a hash of its name),
so that N certificates are rechecked one after the other across the interval instead of all
at once every interval after the operator started; the phase stays the same across restarts.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

# Before the first reconciliation has written a renewal time, look again this soon.
UNKNOWN_RENEWAL_RECHECK_SECONDS = 5.0


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def recheck_phase(identity: str, recheck: timedelta) -> timedelta:
    """A stable offset in [0, recheck) for a certificate: a hash of its identity (e.g.
    "namespace/name"), evenly spread however alike the names are."""
    step = recheck // timedelta(microseconds=1)
    if step <= 0:
        return timedelta(0)
    digest = int.from_bytes(hashlib.sha256(identity.encode()).digest()[:8], "big")
    return timedelta(microseconds=digest % step)


def last_recheck_slot(now: datetime, phase: timedelta, recheck: timedelta) -> datetime:
    """The latest moment at or before `now` that is `phase` into an interval counted from the
    Unix epoch: the certificate's last recheck slot. The next is one interval after it, so
    never later than `now + recheck`."""
    if recheck <= timedelta(0):
        return now
    return now - (now - _EPOCH - phase) % recheck


def seconds_until_due(
    now: datetime, renewal_time: datetime | None, last_check: datetime, recheck: timedelta
) -> float | None:
    """None: reconcile now (renewal is due, or the recheck interval has passed); otherwise
    how long to sleep before asking again."""
    if renewal_time is None:
        return UNKNOWN_RENEWAL_RECHECK_SECONDS
    next_check = last_check + recheck
    if renewal_time <= now or next_check <= now:
        return None
    return (min(renewal_time, next_check) - now).total_seconds()


def seconds_after_reconciliation(
    now: datetime,
    retry_after: float | None,
    renew_at: datetime | None,
    recheck: timedelta,
) -> float:
    """The pause after a reconciliation by the timer: its retry delay if it asked for one,
    else until the renewal time, never longer than the recheck interval."""
    if retry_after is not None:
        return max(retry_after, 0.0)
    if renew_at is None:
        return recheck.total_seconds()
    return min(max((renew_at - now).total_seconds(), 0.0), recheck.total_seconds())
