"""The rollback rule: never below the highest seen; the same revision again is fine."""

from __future__ import annotations

import pytest

from certfleet.core.rollback import highest, rolled_back


@pytest.mark.parametrize(
    ("revision", "seen", "refused"),
    [
        (1, 0, False),  # nothing seen yet: the first pointer is taken as it is
        (5, 5, False),  # the accepted pointer, read again
        (6, 5, False),  # a publish
        (40, 5, False),  # publishes skip numbers (unfinished ones, a replaced pointer)
        (4, 5, True),
        (1, 2**53 - 1, True),
    ],
)
def test_a_revision_below_the_highest_seen_is_a_rollback(
    revision: int, seen: int, refused: bool
) -> None:
    reason = rolled_back(revision, seen)
    assert (reason is not None) is refused
    if reason is not None:
        assert f"revision {revision}" in reason and f"revision {seen}" in reason


def test_the_highest_seen_only_grows() -> None:
    assert highest(7, 5) == 7
    assert highest(3, 5) == 5
