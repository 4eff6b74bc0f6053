"""Rollback protection (pure): a reader never accepts a revision below the highest it has seen
for a location.

Every publish writes a revision above the pointer's and above the highest its writer has seen,
so a legitimate pointer only ever moves up; one that moves down was put back by someone else
(an old, authentic pointer copied over the current one, perhaps of a revoked certificate). The
same revision again is fine: it is the pointer already accepted, read once more.
"""

from __future__ import annotations


def rolled_back(revision: int, highest_seen: int) -> str | None:
    """Why `revision` is refused, or None when it may be accepted."""
    if revision < highest_seen:
        return (
            f"the pointer names revision {revision}, below revision {highest_seen} already "
            "seen for this location: it was rolled back (every publish writes a higher one)"
        )
    return None


def highest(revision: int, highest_seen: int) -> int:
    """The highest revision seen after accepting `revision`."""
    return max(revision, highest_seen)
