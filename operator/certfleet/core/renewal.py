"""When a certificate must be renewed, and which rule said so. Pure: the clock is always an
argument.

The rule, in order:

1. ``not_after - renew_before``: the user's setting (``spec.renewBeforeSeconds``, default
   604800 s, 7 days). A 90-day certificate is renewed with 7 days left, not earlier.
2. Only when ``renew_before`` is as long as the lifetime or longer, rule 1 would make the
   certificate due from its first second, and every replacement too: a renewal loop. Then
   it is ``not_before + 2/3 * lifetime`` instead (a 6-day certificate is renewed after 4
   days with the default setting).
3. An ACME Renewal Information (ARI, RFC 9773) window, when the CA sends one, can only
   bring the renewal *earlier*: the CA uses it to ask for early renewal (revocation, an
   incident). It never postpones renewal past rules 1 and 2, which protect the user's margin.
   RFC 9773 asks clients to pick a random point in the window; a pure function cannot, so
   the caller passes ``ari_fraction`` (0 = window start, 1 = end; default the midpoint).
   A caller that wants to spread load can derive it from the certificate serial.
4. The result is never before ``not_before``: a window in the past means "renew now", and
   any clock at or after ``not_before`` already says so.

Hence, for ``not_before < not_after``: ``not_before <= renewal_time``; without ARI the time is
exactly ``not_after - renew_before`` when ``renew_before < lifetime``, else exactly
``not_before + 2/3 * lifetime`` (floored to the microsecond); ARI can only make it earlier.
``renewal_time`` returns the moment with the rule that applied (``RenewalTime``), which says
it in words for a status message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

DEFAULT_RENEW_BEFORE = timedelta(seconds=604800)  # the user's 7 days


class RenewalRule(StrEnum):
    """Which rule of the module docstring set the renewal time."""

    RenewBefore = "RenewBefore"  # rule 1: not_after - renew_before
    TwoThirdsOfLifetime = "TwoThirdsOfLifetime"  # rule 2: renew_before >= lifetime
    AcmeRenewalInfo = "AcmeRenewalInfo"  # rule 3: the CA's window came first


@dataclass(frozen=True, slots=True)
class RenewalTime:
    """The renewal moment ``at``, the ``rule`` that set it, and what the rule was given."""

    at: datetime
    rule: RenewalRule
    renew_before: timedelta
    lifetime: timedelta

    @property
    def explanation(self) -> str:
        """The rule in plain words, for a status message (no timestamps: the caller has them)."""
        if self.rule is RenewalRule.RenewBefore:
            return f"{_words(self.renew_before)} before expiry, spec.renewBeforeSeconds"
        if self.rule is RenewalRule.TwoThirdsOfLifetime:
            return (
                f"2/3 of its {_lifetime_words(self.lifetime)}: renewBeforeSeconds is not "
                "shorter than the lifetime"
            )
        return "the CA's renewal window, RFC 9773"


def renewal_time(
    not_before: datetime,
    not_after: datetime,
    renew_before: timedelta = DEFAULT_RENEW_BEFORE,
    ari_window: tuple[datetime, datetime] | None = None,
    *,
    ari_fraction: float = 0.5,
) -> RenewalTime:
    """When a certificate valid from ``not_before`` to ``not_after`` should be renewed, and why.

    See the module docstring for the rule. ``at`` is a UTC datetime. Raises ValueError for
    naive datetimes, a negative ``renew_before``, an ARI window that ends before it starts, or
    an ``ari_fraction`` outside [0, 1]. A certificate whose lifetime is not positive is due at
    ``not_before`` (rule 2: any margin is as long as its lifetime).
    """
    not_before = _utc(not_before, "not_before")
    not_after = _utc(not_after, "not_after")
    if renew_before < timedelta(0):
        raise ValueError(f"renew_before must not be negative, got {renew_before}")
    if not 0.0 <= ari_fraction <= 1.0:
        raise ValueError(f"ari_fraction must be within [0, 1], got {ari_fraction}")

    lifetime = not_after - not_before
    if renew_before < lifetime:
        due, rule = not_after - renew_before, RenewalRule.RenewBefore
    else:
        # Floor division rounds down to the microsecond, so 2/3 is never exceeded.
        due, rule = not_before + (lifetime * 2) // 3, RenewalRule.TwoThirdsOfLifetime
    if ari_window is not None:
        start = _utc(ari_window[0], "ari_window start")
        end = _utc(ari_window[1], "ari_window end")
        if end < start:
            raise ValueError(f"ARI window ends ({end}) before it starts ({start})")
        suggested = start + (end - start) * ari_fraction
        if suggested < due:
            due, rule = suggested, RenewalRule.AcmeRenewalInfo
    return RenewalTime(max(due, not_before), rule, renew_before, lifetime)


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
    return _utc(now, "now") >= due.at


_UNITS = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))


def _counts(duration: timedelta) -> list[tuple[int, str]]:
    """Whole seconds split into every unit they have: 10.5 days is 10 days and 12 hours."""
    left = max(duration // timedelta(seconds=1), 0)
    counts = []
    for unit, seconds in _UNITS:
        count, left = divmod(left, seconds)
        if count:
            counts.append((count, unit))
    return counts or [(0, "second")]


def _words(duration: timedelta) -> str:
    """``7 days``, ``1 minute``, ``10 days 12 hours``."""
    return " ".join(f"{n} {unit}{'' if n == 1 else 's'}" for n, unit in _counts(duration))


def _lifetime_words(lifetime: timedelta) -> str:
    """``6-day lifetime``, ``15-second lifetime``; ``lifetime of 10 days 12 hours``."""
    counts = _counts(lifetime)
    if len(counts) == 1:
        return f"{counts[0][0]}-{counts[0][1]} lifetime"
    return f"lifetime of {_words(lifetime)}"


def _utc(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {moment.isoformat()}")
    return moment.astimezone(UTC)
