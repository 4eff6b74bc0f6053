"""Renewal time: the rule as a table, the guard rails and the Hypothesis properties."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from certfleet.core.renewal import (
    DEFAULT_RENEW_BEFORE,
    RenewalRule,
    needs_renewal,
    renewal_time,
)

NB = datetime(2030, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
SECOND = timedelta(seconds=1)


def test_default_is_the_users_seven_days() -> None:
    assert timedelta(seconds=604800) == DEFAULT_RENEW_BEFORE


@dataclass(frozen=True)
class Rule:
    """A certificate NB .. NB + lifetime, the user's setting, maybe a CA's window (offsets
    from NB): when it is renewed, by which rule, and what the status message says."""

    lifetime: timedelta
    renew_before: timedelta
    at: timedelta
    rule: RenewalRule
    words: str
    ari: tuple[timedelta, timedelta] | None = None


RULES = {
    "a 90-day certificate renews at notAfter - 7 d": Rule(
        90 * DAY,
        DEFAULT_RENEW_BEFORE,
        83 * DAY,
        RenewalRule.RenewBefore,
        "7 days before expiry, spec.renewBeforeSeconds",
    ),
    "a 365-day certificate renews at notAfter - 7 d, not four months early": Rule(
        365 * DAY,
        DEFAULT_RENEW_BEFORE,
        358 * DAY,
        RenewalRule.RenewBefore,
        "7 days before expiry",
    ),
    "a 6-day certificate with the default renews at 2/3 of its lifetime": Rule(
        6 * DAY,
        DEFAULT_RENEW_BEFORE,
        4 * DAY,
        RenewalRule.TwoThirdsOfLifetime,
        "2/3 of its 6-day lifetime: renewBeforeSeconds is not shorter than the lifetime",
    ),
    "a 6-hour certificate with the default renews at 2/3 of its lifetime": Rule(
        6 * HOUR,
        DEFAULT_RENEW_BEFORE,
        4 * HOUR,
        RenewalRule.TwoThirdsOfLifetime,
        "2/3 of its 6-hour lifetime",
    ),
    "a custom renewBeforeSeconds of 30 days on 90 is honoured": Rule(
        90 * DAY,
        30 * DAY,
        60 * DAY,
        RenewalRule.RenewBefore,
        "30 days before expiry, spec.renewBeforeSeconds",
    ),
    "a margin in hours and minutes is named in full": Rule(
        90 * DAY,
        10 * DAY + 12 * HOUR + MINUTE,
        79 * DAY + 11 * HOUR + 59 * MINUTE,
        RenewalRule.RenewBefore,
        "10 days 12 hours 1 minute before expiry",
    ),
    "a margin one second shorter than the lifetime is still honoured": Rule(
        7 * DAY + SECOND,
        DEFAULT_RENEW_BEFORE,
        SECOND,
        RenewalRule.RenewBefore,
        "7 days before expiry",
    ),
    "renewBefore equal to the lifetime falls back to 2/3": Rule(
        7 * DAY,
        DEFAULT_RENEW_BEFORE,
        7 * DAY * 2 / 3,
        RenewalRule.TwoThirdsOfLifetime,
        "2/3 of its 7-day lifetime",
    ),
    "renewBefore longer than the lifetime falls back to 2/3": Rule(
        15 * SECOND,
        MINUTE,
        10 * SECOND,
        RenewalRule.TwoThirdsOfLifetime,
        "2/3 of its 15-second lifetime",
    ),
    "a lifetime in days and hours is named in full": Rule(
        DAY + 12 * HOUR,
        DEFAULT_RENEW_BEFORE,
        DAY,
        RenewalRule.TwoThirdsOfLifetime,
        "2/3 of its lifetime of 1 day 12 hours",
    ),
    "a zero margin renews at notAfter": Rule(
        90 * DAY, timedelta(0), 90 * DAY, RenewalRule.RenewBefore, "0 seconds before expiry"
    ),
    "an ARI window earlier than the rule wins (its midpoint)": Rule(
        90 * DAY,
        DEFAULT_RENEW_BEFORE,
        11 * DAY,
        RenewalRule.AcmeRenewalInfo,
        "the CA's renewal window, RFC 9773",
        ari=(10 * DAY, 12 * DAY),
    ),
    "an ARI window earlier than the 2/3 fallback wins": Rule(
        HOUR,
        DEFAULT_RENEW_BEFORE,
        30 * MINUTE,
        RenewalRule.AcmeRenewalInfo,
        "the CA's renewal window",
        ari=(timedelta(0), HOUR),
    ),
    "an ARI window later than the rule is ignored": Rule(
        90 * DAY,
        DEFAULT_RENEW_BEFORE,
        83 * DAY,
        RenewalRule.RenewBefore,
        "7 days before expiry",
        ari=(84 * DAY, 88 * DAY),
    ),
    "an ARI window whose midpoint is the rule's time leaves the rule in charge": Rule(
        90 * DAY,
        DEFAULT_RENEW_BEFORE,
        83 * DAY,
        RenewalRule.RenewBefore,
        "7 days before expiry",
        ari=(82 * DAY, 84 * DAY),
    ),
    "an ARI window in the past means renew at notBefore, never before": Rule(
        90 * DAY,
        DEFAULT_RENEW_BEFORE,
        timedelta(0),
        RenewalRule.AcmeRenewalInfo,
        "the CA's renewal window",
        ari=(-10 * DAY, -9 * DAY),
    ),
}


@pytest.mark.parametrize("case", RULES.values(), ids=RULES.keys())
def test_the_renewal_rule(case: Rule) -> None:
    window = None if case.ari is None else (NB + case.ari[0], NB + case.ari[1])
    when = renewal_time(NB, NB + case.lifetime, case.renew_before, window)
    assert (when.at, when.rule) == (NB + case.at, case.rule)
    assert case.words in when.explanation


@pytest.mark.parametrize(
    ("window", "fraction", "expected"),
    [
        ((NB + 10 * DAY, NB + 12 * DAY), 0.5, NB + 11 * DAY),  # CA asks for early renewal
        ((NB + 10 * DAY, NB + 12 * DAY), 0.0, NB + 10 * DAY),
        ((NB + 10 * DAY, NB + 12 * DAY), 1.0, NB + 12 * DAY),
        ((NB + 58 * DAY, NB + 62 * DAY), 0.5, NB + 60 * DAY),
        ((NB + 58 * DAY, NB + 62 * DAY), 0.25, NB + 59 * DAY),
        ((NB + 84 * DAY, NB + 88 * DAY), 0.5, NB + 83 * DAY),  # never later than the rule
        ((NB + 82 * DAY, NB + 86 * DAY), 0.0, NB + 82 * DAY),
        ((NB + 82 * DAY, NB + 86 * DAY), 0.5, NB + 83 * DAY),
        ((NB - 10 * DAY, NB - 9 * DAY), 0.5, NB),  # window in the past: renew now
        ((NB + 5 * DAY, NB + 5 * DAY), 0.5, NB + 5 * DAY),  # a point
    ],
)
def test_ari_window_brings_renewal_earlier_only(
    window: tuple[datetime, datetime], fraction: float, expected: datetime
) -> None:
    assert renewal_time(NB, NB + 90 * DAY, ari_window=window, ari_fraction=fraction).at == expected


def test_degenerate_lifetimes_are_due_at_not_before() -> None:
    assert renewal_time(NB, NB).at == NB
    assert renewal_time(NB, NB - DAY).at == NB


def test_any_timezone_in_utc_out() -> None:
    plus2 = timezone(timedelta(hours=2))
    result = renewal_time(NB.astimezone(plus2), (NB + 90 * DAY).astimezone(plus2)).at
    assert result == NB + 83 * DAY
    assert result.tzinfo is UTC


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"not_before": NB.replace(tzinfo=None)}, "timezone-aware"),
        ({"not_after": (NB + DAY).replace(tzinfo=None)}, "timezone-aware"),
        ({"renew_before": -DAY}, "negative"),
        ({"ari_window": (NB + 2 * DAY, NB + DAY)}, "ends"),
        ({"ari_window": (NB.replace(tzinfo=None), NB + DAY)}, "timezone-aware"),
        ({"ari_fraction": 1.5}, "within"),
        ({"ari_fraction": -0.1}, "within"),
    ],
)
def test_bad_arguments_raise(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"not_before": NB, "not_after": NB + 90 * DAY, **kwargs}
    with pytest.raises(ValueError, match=message):
        renewal_time(**arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("now", "due"),
    [
        (NB, False),
        (NB + 60 * DAY, False),  # 2/3 of the lifetime: no longer a reason
        (NB + 83 * DAY - timedelta(microseconds=1), False),
        (NB + 83 * DAY, True),
        (NB + 89 * DAY, True),
        (NB + 100 * DAY, True),
    ],
)
def test_needs_renewal_compares_with_the_clock(now: datetime, due: bool) -> None:
    assert needs_renewal(NB, NB + 90 * DAY, now=now) is due


def test_needs_renewal_honours_ari_and_renew_before() -> None:
    window = (NB + 10 * DAY, NB + 12 * DAY)
    assert needs_renewal(NB, NB + 90 * DAY, now=NB + 11 * DAY, ari_window=window)
    assert not needs_renewal(NB, NB + 90 * DAY, now=NB + 11 * DAY)
    assert needs_renewal(NB, NB + 90 * DAY, now=NB + 45 * DAY, renew_before=45 * DAY)
    with pytest.raises(ValueError, match="timezone-aware"):
        needs_renewal(NB, NB + DAY, now=NB.replace(tzinfo=None))


# --- properties ---------------------------------------------------------------------------

US = timedelta(microseconds=1)
instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
lifetimes = st.timedeltas(min_value=US, max_value=4000 * DAY)
margins = st.timedeltas(min_value=timedelta(0), max_value=400 * DAY)
windows = st.one_of(
    st.none(),
    st.tuples(
        st.timedeltas(min_value=-400 * DAY, max_value=4000 * DAY),
        st.timedeltas(min_value=timedelta(0), max_value=30 * DAY),
    ),
)


@settings(max_examples=500, deadline=None)
@given(instants, lifetimes, margins, windows, st.floats(0.0, 1.0))
def test_renewal_time_properties(
    not_before: datetime,
    lifetime: timedelta,
    renew_before: timedelta,
    window: tuple[timedelta, timedelta] | None,
    fraction: float,
) -> None:
    not_after = not_before + lifetime
    ari = None if window is None else (not_before + window[0], not_before + window[0] + window[1])
    when = renewal_time(not_before, not_after, renew_before, ari, ari_fraction=fraction)
    due = when.at

    assert due >= not_before, "never before not_before"
    if renew_before < lifetime:
        # The user's margin always holds when a certificate this long can meet it at all.
        assert due <= not_after - renew_before, "never after not_after - renew_before"
    else:
        # Never after 2/3 of the lifetime, checked exactly in microseconds.
        assert 3 * ((due - not_before) // US) <= 2 * (lifetime // US), "never after 2/3"
    own = renewal_time(not_before, not_after, renew_before)
    if ari is None:
        # Without a CA's window, exactly the user's margin, or 2/3 when it cannot be met.
        if renew_before < lifetime:
            assert (due, when.rule) == (not_after - renew_before, RenewalRule.RenewBefore)
        else:
            assert (due - not_before) // US == (2 * (lifetime // US)) // 3
            assert when.rule is RenewalRule.TwoThirdsOfLifetime
    else:
        # ARI only ever brings renewal earlier, towards its chosen point, and says so.
        suggested = ari[0] + (ari[1] - ari[0]) * fraction
        assert due <= own.at
        assert due <= max(not_before, suggested)
        assert (when.rule is RenewalRule.AcmeRenewalInfo) is (suggested < own.at)
        if when.rule is not RenewalRule.AcmeRenewalInfo:
            assert when == own


@settings(max_examples=200, deadline=None)
@given(instants, lifetimes, margins, st.timedeltas(min_value=-10 * DAY, max_value=4000 * DAY))
def test_needs_renewal_is_the_clock_past_renewal_time(
    not_before: datetime, lifetime: timedelta, renew_before: timedelta, offset: timedelta
) -> None:
    now = not_before + offset
    due = renewal_time(not_before, not_before + lifetime, renew_before).at
    assert needs_renewal(not_before, not_before + lifetime, now=now, renew_before=renew_before) is (
        now >= due
    )
