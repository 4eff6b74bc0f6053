"""The test bed's one wait: returns what the condition found, fails saying what it saw last."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from testbed.waiting import WaitTimeout, wait_for


def answers(*values: object) -> Callable[[], object]:
    """A condition that returns `values` one per call, then the last one for ever."""
    remaining = list(values)

    def condition() -> object:
        value = remaining.pop(0) if len(remaining) > 1 else remaining[0]
        if isinstance(value, Exception):
            raise value
        return value

    return condition


def test_it_returns_the_first_truthy_value() -> None:
    assert wait_for("a value", answers(None, 0, "", {"found": 1}), interval=0) == {"found": 1}


def test_a_timeout_names_what_and_the_last_value_seen() -> None:
    started = time.monotonic()
    with pytest.raises(WaitTimeout, match=r"^the answer: not within 0.2 s; .*returned \[\]$"):
        wait_for("the answer", answers(None, []), timeout=0.2, interval=0.01)
    assert 0.2 <= time.monotonic() - started < 2


def test_a_described_wait_describes_the_state_at_the_timeout() -> None:
    seen: list[int] = []

    def count() -> bool:
        seen.append(len(seen))
        return False

    with pytest.raises(WaitTimeout, match=r"^checked (\d+) times: ") as failure:
        wait_for(lambda: f"checked {len(seen)} times", count, timeout=0.1, interval=0.01)
    assert failure.value.args[0].startswith(f"checked {len(seen)} times")
    assert len(seen) >= 2


def test_listed_exceptions_mean_not_yet_and_the_last_one_is_shown() -> None:
    refused = ConnectionRefusedError("refused")
    assert wait_for("a port", answers(refused, refused, 7), retry_on=(OSError,), interval=0) == 7
    with pytest.raises(WaitTimeout, match="raised ConnectionRefusedError"):
        wait_for("a port", answers(refused), timeout=0.05, interval=0.01, retry_on=(OSError,))


def test_other_exceptions_fail_at_once() -> None:
    started = time.monotonic()
    with pytest.raises(KeyError):
        wait_for("a key", answers(KeyError("status")), timeout=30, retry_on=(OSError,))
    assert time.monotonic() - started < 1


def test_the_condition_is_checked_again_after_the_deadline() -> None:
    calls: list[float] = []
    deadline = time.monotonic() + 0.1

    def late() -> bool:
        calls.append(time.monotonic())
        return calls[-1] >= deadline

    assert wait_for("a late answer", late, timeout=0.1, interval=1.0) is True
    assert len(calls) == 2
