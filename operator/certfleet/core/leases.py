"""Leases, pure: the time is passed in. Two kinds.

The order lease (``StorageLease``): a small object in the shared datastore that a machine
takes before it orders a certificate, so that several build machines, or a cluster and a
build machine, sharing one bucket order once (Caddy's storage lock). Its expiry is wall-clock
time, since machines that share nothing but the bucket have no other common clock: keep their
clocks in sync (NTP) and the lease much longer than an order takes.

Leader election over a Kubernetes Lease: who may act now.

Exactly one operator replica acts. Time here is each replica's own monotonic clock, never
the wall clock of another machine (client-go's observed-time rule): a standby remembers when
it last saw the Lease's record change, and may take the Lease only after it has seen no
change for the Lease's whole duration. A holder whose clock is skewed, or whose renewTime is
in the future or the past, is therefore judged by what it does, not by what it writes.

The leader stops acting after ``renew_deadline`` without a successful renewal, measured on
its own monotonic clock; with ``renew_deadline`` shorter than the duration, it has stopped
before any standby may take over.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class StorageLease:
    """Who holds an order lease, until when; ``released``: given back before its expiry."""

    holder: str
    expires_at: datetime
    released: bool = False


def new_storage_lease(holder: str, now: datetime, duration: timedelta) -> StorageLease:
    if duration <= timedelta(0):
        raise ValueError("an order lease needs a positive duration")
    return StorageLease(holder, now + duration)


def may_take_storage_lease(lease: StorageLease | None, holder: str, now: datetime) -> bool:
    """Free when there is none, it was released, it expired (its holder died), or it is
    this holder's own."""
    return lease is None or lease.released or lease.holder == holder or now >= lease.expires_at


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """What a replica reads of a Lease; ``version`` is its resourceVersion, which every
    renewal changes."""

    holder: str | None
    duration_seconds: float
    version: str | None


@dataclass(frozen=True, slots=True)
class Observation:
    """A record, and when this replica first saw it (its own monotonic seconds)."""

    record: LeaseRecord
    seen_at: float


def observe(previous: Observation | None, record: LeaseRecord, now: float) -> Observation:
    """The observation after reading ``record`` at ``now``: unchanged records keep the time
    they were first seen, so a holder that stops renewing ages from there."""
    if previous is not None and previous.record == record:
        return previous
    return Observation(record, now)


def may_take(observation: Observation, identity: str, now: float) -> bool:
    record = observation.record
    if not record.holder or record.holder == identity:
        return True
    return now >= observation.seen_at + record.duration_seconds


def still_leading(last_renewed: float, renew_deadline: float, now: float) -> bool:
    """A leader that could not renew stops acting at most ``renew_deadline`` seconds after
    its last successful renewal, all on its own monotonic clock."""
    return now < last_renewed + renew_deadline
