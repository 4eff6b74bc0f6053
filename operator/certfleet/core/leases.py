"""Leader election over a Kubernetes Lease: who may act now. Pure: the clock is passed in.

Exactly one operator replica acts. A replica may take the lease when nobody holds it, when it
already holds it, or when the holder has not renewed it within its duration (it died).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class LeaseState:
    holder: str | None
    renewed_at: datetime | None
    duration: timedelta


def may_take(lease: LeaseState, identity: str, now: datetime) -> bool:
    if not lease.holder or lease.holder == identity:
        return True
    if lease.renewed_at is None:
        return True
    return now >= lease.renewed_at + lease.duration


def still_leading(last_renewed: datetime, duration: timedelta, now: datetime) -> bool:
    """A leader that could not renew stops acting before anyone else may take over: at most
    `duration` after its last successful renewal."""
    return now < last_renewed + duration
