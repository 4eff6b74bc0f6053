"""Which old revisions of a location may go (pure: the time is passed in).

A revision may be removed when all of these hold: it is below the current one (a higher one
may be another writer's publish in flight); it is not among the `keep` newest below the
current one (a rollback, by a person, needs something to roll back to); and the revision
after it was written longer than `grace` ago: it was replaced then, so no agent that read the
pointer before can still be fetching it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from itertools import pairwise


def revisions_to_remove(
    written: Mapping[int, datetime],
    current: int,
    keep: int,
    now: datetime,
    grace: timedelta,
) -> list[int]:
    """`written`: each revision and when its newest object was written."""
    ordered = sorted(r for r in written if r <= current)
    replaced_at = {r: written[later] for r, later in pairwise(ordered)}
    older = sorted(replaced_at, reverse=True)
    return sorted(r for r in older[max(keep, 0) :] if replaced_at[r] <= now - grace)
