"""Old revisions go only when nothing can still need them."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from certfleet.core.retention import revisions_to_remove
from unit.core.certificates import NOW

HOUR = timedelta(hours=1)
OLD = NOW - 2 * HOUR


@pytest.mark.parametrize(
    ("sentence", "written", "current", "keep", "removed"),
    [
        ("the newest below the current are kept", {1: OLD, 2: OLD, 3: OLD, 4: OLD}, 4, 2, [1]),
        ("nothing beyond the limit: nothing goes", {1: OLD, 2: OLD}, 2, 2, []),
        ("the current one never goes", {5: OLD}, 5, 0, []),
        ("a revision above the current may be in flight", {1: OLD, 2: OLD, 9: OLD}, 2, 0, [1]),
        ("gaps are fine", {1: OLD, 4: OLD, 7: OLD, 8: OLD}, 8, 1, [1, 4]),
        ("one replaced within the grace stays", {1: OLD, 2: NOW - HOUR / 2, 3: OLD}, 3, 0, [2]),
        ("long written but just replaced stays", {1: OLD, 2: NOW - HOUR / 2}, 2, 0, []),
        ("a negative limit keeps none", {1: OLD, 2: OLD}, 2, -3, [1]),
    ],
)
def test_revisions_to_remove(
    sentence: str, written: dict[int, datetime], current: int, keep: int, removed: list[int]
) -> None:
    assert revisions_to_remove(written, current, keep, NOW, HOUR) == removed, sentence
