from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from certfleet.core.backoff import retry_delay


def test_doubles_from_the_base_up_to_the_cap() -> None:
    delays = [retry_delay(n, base_seconds=30, cap_seconds=300) for n in range(1, 7)]
    assert delays == [30, 60, 120, 240, 300, 300]


def test_honours_a_longer_retry_after_only() -> None:
    assert retry_delay(1, base_seconds=30, retry_after_seconds=3600) == 3600
    assert retry_delay(3, base_seconds=30, retry_after_seconds=5) == 120


@pytest.mark.parametrize("failures", [0, -1])
def test_refuses_a_count_without_failure(failures: int) -> None:
    with pytest.raises(ValueError):
        retry_delay(failures)


@given(st.integers(min_value=1, max_value=10**9), st.floats(min_value=0.001, max_value=1e6))
def test_never_below_base_nor_above_cap(failures: int, base: float) -> None:
    cap = base * 100
    delay = retry_delay(failures, base_seconds=base, cap_seconds=cap)
    assert base <= delay <= cap
