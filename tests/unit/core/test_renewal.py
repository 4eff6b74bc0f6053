"""Renewal time: the worked examples, the guard rails and the Hypothesis properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from certfleet.core.renewal import DEFAULT_RENEW_BEFORE, needs_renewal, renewal_time

NB = datetime(2030, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


def test_default_is_the_users_seven_days() -> None:
    assert timedelta(seconds=604800) == DEFAULT_RENEW_BEFORE


@pytest.mark.parametrize(
    ("lifetime", "renew_before", "expected"),
    [
        (90 * DAY, DEFAULT_RENEW_BEFORE, 60 * DAY),  # 2/3 of a Let's Encrypt certificate
        (30 * DAY, DEFAULT_RENEW_BEFORE, 20 * DAY),
        (21 * DAY, DEFAULT_RENEW_BEFORE, 14 * DAY),  # both rules agree
        (10 * DAY, DEFAULT_RENEW_BEFORE, 3 * DAY),  # 7 days before expiry comes first
        (7 * DAY + HOUR, DEFAULT_RENEW_BEFORE, HOUR),
        (7 * DAY, DEFAULT_RENEW_BEFORE, 7 * DAY * 2 / 3),  # unreachable margin: 2/3 rule
        (6 * DAY, DEFAULT_RENEW_BEFORE, 4 * DAY),  # no renewal loop for 6-day certificates
        (6 * HOUR, DEFAULT_RENEW_BEFORE, 4 * HOUR),
        (90 * DAY, 30 * DAY, 60 * DAY),
        (90 * DAY, 45 * DAY, 45 * DAY),
        (90 * DAY, timedelta(0), 60 * DAY),
        (365 * DAY, DEFAULT_RENEW_BEFORE, 365 * DAY * 2 / 3),
    ],
)
def test_renewal_time_examples(
    lifetime: timedelta, renew_before: timedelta, expected: timedelta
) -> None:
    assert renewal_time(NB, NB + lifetime, renew_before) == NB + expected


@pytest.mark.parametrize(
    ("window", "fraction", "expected"),
    [
        ((NB + 10 * DAY, NB + 12 * DAY), 0.5, NB + 11 * DAY),  # CA asks for early renewal
        ((NB + 10 * DAY, NB + 12 * DAY), 0.0, NB + 10 * DAY),
        ((NB + 10 * DAY, NB + 12 * DAY), 1.0, NB + 12 * DAY),
        ((NB + 58 * DAY, NB + 62 * DAY), 0.5, NB + 60 * DAY),
        ((NB + 58 * DAY, NB + 62 * DAY), 0.25, NB + 59 * DAY),
        ((NB + 70 * DAY, NB + 80 * DAY), 0.5, NB + 60 * DAY),  # never later than the bounds
        ((NB - 10 * DAY, NB - 9 * DAY), 0.5, NB),  # window in the past: renew now
        ((NB + 5 * DAY, NB + 5 * DAY), 0.5, NB + 5 * DAY),  # a point
    ],
)
def test_ari_window_brings_renewal_earlier_only(
    window: tuple[datetime, datetime], fraction: float, expected: datetime
) -> None:
    assert renewal_time(NB, NB + 90 * DAY, ari_window=window, ari_fraction=fraction) == expected


def test_degenerate_lifetimes_are_due_at_not_before() -> None:
    assert renewal_time(NB, NB) == NB
    assert renewal_time(NB, NB - DAY) == NB


def test_any_timezone_in_utc_out() -> None:
    plus2 = timezone(timedelta(hours=2))
    result = renewal_time(NB.astimezone(plus2), (NB + 90 * DAY).astimezone(plus2))
    assert result == NB + 60 * DAY
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
        (NB + 60 * DAY - timedelta(microseconds=1), False),
        (NB + 60 * DAY, True),
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
    due = renewal_time(not_before, not_after, renew_before, ari, ari_fraction=fraction)

    assert due >= not_before, "never before not_before"
    # Never after 2/3 of the lifetime, checked exactly in microseconds.
    assert 3 * ((due - not_before) // US) <= 2 * (lifetime // US), "never after 2/3"
    if renew_before < lifetime:
        # The user's margin always holds when a certificate this long can meet it at all.
        assert due <= not_after - renew_before, "never after not_after - renew_before"
    if ari is not None:
        # ARI only ever brings renewal earlier, towards its chosen point.
        assert due <= renewal_time(not_before, not_after, renew_before)
        assert due <= max(not_before, ari[0] + (ari[1] - ari[0]) * fraction)


@settings(max_examples=200, deadline=None)
@given(instants, lifetimes, margins, st.timedeltas(min_value=-10 * DAY, max_value=4000 * DAY))
def test_needs_renewal_is_the_clock_past_renewal_time(
    not_before: datetime, lifetime: timedelta, renew_before: timedelta, offset: timedelta
) -> None:
    now = not_before + offset
    due = renewal_time(not_before, not_before + lifetime, renew_before)
    assert needs_renewal(not_before, not_before + lifetime, now=now, renew_before=renew_before) is (
        now >= due
    )
