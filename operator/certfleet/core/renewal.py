"""When a certificate must be renewed. Pure: the clock is always an argument.

The rule, in order:

1. ``not_after - renew_before``: the user's margin (default 604800 s, 7 days).
2. ``not_before + 2/3 * lifetime``: a guard for short-lived certificates, and Let's Encrypt's
   own advice for 90-day ones. The earlier of 1 and 2 wins.
3. If ``renew_before`` is not shorter than the lifetime, rule 1 would make the certificate
   due from its first second, and every replacement too: a renewal loop. Then rule 1 is
   dropped and rule 2 alone applies (a 6-day certificate is renewed after 4 days).
4. An ACME Renewal Information (ARI, RFC 9773) window, when the CA sends one, can only
   bring the renewal *earlier*: the CA uses it to ask for early renewal (revocation, an
   incident). It never postpones renewal past rules 1 to 3, which protect the user's margin.
   RFC 9773 asks clients to pick a random point in the window; a pure function cannot, so
   the caller passes ``ari_fraction`` (0 = window start, 1 = end; default the midpoint).
   A caller that wants to spread load can derive it from the certificate serial.
5. The result is never before ``not_before``: a window in the past means "renew now", and
   any clock at or after ``not_before`` already says so.

Hence, for ``not_before < not_after``: ``not_before <= renewal_time <= not_before +
2/3 * lifetime``, and ``renewal_time <= not_after - renew_before`` whenever
``renew_before < lifetime`` (when it is not, rules 1 and 5 contradict; 3 decides).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

DEFAULT_RENEW_BEFORE = timedelta(seconds=604800)  # the user's 7 days


def renewal_time(
    not_before: datetime,
    not_after: datetime,
    renew_before: timedelta = DEFAULT_RENEW_BEFORE,
    ari_window: tuple[datetime, datetime] | None = None,
    *,
    ari_fraction: float = 0.5,
) -> datetime:
    """The moment a certificate valid from ``not_before`` to ``not_after`` should be renewed.

    See the module docstring for the rule. Returns a UTC datetime. Raises ValueError for naive
    datetimes, a negative ``renew_before``, an ARI window that ends before it starts, or an
    ``ari_fraction`` outside [0, 1]. A certificate whose lifetime is not positive is due at
    ``not_before``.
    """
    not_before = _utc(not_before, "not_before")
    not_after = _utc(not_after, "not_after")
    if renew_before < timedelta(0):
        raise ValueError(f"renew_before must not be negative, got {renew_before}")
    if not 0.0 <= ari_fraction <= 1.0:
        raise ValueError(f"ari_fraction must be within [0, 1], got {ari_fraction}")

    lifetime = not_after - not_before
    if lifetime <= timedelta(0):
        return not_before
    # Floor division rounds down to the microsecond, so the bound is never exceeded.
    due = not_before + (lifetime * 2) // 3
    if renew_before < lifetime:
        due = min(due, not_after - renew_before)
    if ari_window is not None:
        start = _utc(ari_window[0], "ari_window start")
        end = _utc(ari_window[1], "ari_window end")
        if end < start:
            raise ValueError(f"ARI window ends ({end}) before it starts ({start})")
        due = min(due, start + (end - start) * ari_fraction)
    return max(due, not_before)


def needs_renewal(
    not_before: datetime,
    not_after: datetime,
    *,
    now: datetime,
    renew_before: timedelta = DEFAULT_RENEW_BEFORE,
    ari_window: tuple[datetime, datetime] | None = None,
    ari_fraction: float = 0.5,
) -> bool:
    """Whether, at ``now``, the renewal time has been reached."""
    due = renewal_time(not_before, not_after, renew_before, ari_window, ari_fraction=ari_fraction)
    return _utc(now, "now") >= due


def _utc(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {moment.isoformat()}")
    return moment.astimezone(UTC)
