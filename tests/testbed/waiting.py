"""Waiting for a condition, never for a time: the one polling loop of the tests and the test bed.

Specialised waits (a server's port, a resource's Ready condition, a served certificate) are
conditions handed to `wait_for`, so every wait fails the same way: naming what was awaited and
what was seen last.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """A condition did not hold in time; the message says what and what the last check saw."""


def wait_for(
    what: str | Callable[[], str],
    condition: Callable[[], T | None],
    timeout: float = 15.0,
    interval: float = 0.05,
    retry_on: tuple[type[Exception], ...] = (),
) -> T:
    """Calls `condition` every `interval` seconds until it returns a truthy value; returns it.

    An exception of a type in `retry_on` means "not yet"; any other propagates at once, so a
    broken check fails instead of timing out. After `timeout` seconds raises WaitTimeout with
    `what` (a function is called then, to describe the state at that moment) and the last value
    or exception. The condition is always checked once more after the deadline has passed.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except retry_on as error:
            last = f"raised {error!r}"
        else:
            if value:
                return value
            last = f"returned {value!r}"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            described = what() if callable(what) else what
            raise WaitTimeout(f"{described}: not within {timeout:g} s; the last check {last}")
        time.sleep(min(interval, remaining))
