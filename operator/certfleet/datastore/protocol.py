"""The datastore as the rest of certfleet sees it: a small Protocol and its values.

Two implementations: ``s3_store.S3Datastore`` (the real one) and ``memory.InMemoryDatastore``
(unit tests of callers, which then need no S3). Both keep the same promises:

- ``publish`` writes a new revision, verifies it, and only then moves the pointer, with a
  conditional write against the pointer the caller's decision was based on
  (``expected_pointer_etag``): two writers never both win (DatastoreConflictError);
- ``read_current`` and ``read_revision`` return only verified revisions: the pointer
  authenticated for its location (``pointer``), digests checked against it, the private key
  decrypted (DatastoreIntegrityError otherwise);
- revisions only grow: a publish writes above the pointer's revision and above the highest
  the caller says it has seen (``after_revision``), so readers can refuse a lower one;
- ``poll_pointer`` is a conditional read: an unchanged pointer transfers no body;
- ``take_lease`` is a conditional write too: of two machines asking at once, one gets the
  order lease of a location (``LeaseTaken``) and the other is told who holds it
  (``LeaseHeld``); an expired lease is taken over against the ETag read, so again by one;
- ``claim`` is a conditional write too: of two claimants of one location exactly one owns
  it; a claim is replaced only against the ETag of the one read.
"""

from __future__ import annotations

import dataclasses
import enum
from datetime import datetime, timedelta
from typing import Protocol

from certfleet.core.leases import StorageLease
from certfleet.core.ownership import LocationOwner
from certfleet.datastore.location import DatastoreLocation
from certfleet.datastore.pointer import Pointer


@dataclasses.dataclass(frozen=True, slots=True)
class StoredCertificate:
    """A verified revision: digests checked against the pointer, key decrypted."""

    pointer: Pointer
    pointer_etag: str
    fullchain: bytes = dataclasses.field(repr=False)
    privkey: bytes = dataclasses.field(repr=False)
    # False after a master-key rotation: the pointer or the key is sealed with a previous
    # key; the operator publishes it again under the current one, so the old can go.
    sealed_with_current_key: bool = True


class PollStatus(enum.Enum):
    UNCHANGED = "unchanged"
    CHANGED = "changed"
    MISSING = "missing"


@dataclasses.dataclass(frozen=True, slots=True)
class PointerPoll:
    """The answer to a conditional poll of `current.json`.

    UNCHANGED: `etag` is the one polled with, `pointer` is None (nothing was transferred).
    CHANGED: `pointer` and its new `etag`.
    MISSING: no pointer exists (nothing published yet); both are None.
    """

    status: PollStatus
    etag: str | None = None
    pointer: Pointer | None = None

    @property
    def changed(self) -> bool:
        return self.status is PollStatus.CHANGED


@dataclasses.dataclass(frozen=True, slots=True)
class LeaseTaken:
    """This machine holds the order lease; ``etag`` proves it when it gives it back."""

    lease: StorageLease
    etag: str


@dataclasses.dataclass(frozen=True, slots=True)
class LeaseHeld:
    """Another machine holds the order lease (``lease`` says who, and until when)."""

    lease: StorageLease


@dataclasses.dataclass(frozen=True, slots=True)
class LocationClaim:
    """``<location>/owner.json``: who owns the location (``core.ownership``). ``owner`` None:
    the object is not a claim (junk), which a claimant may replace against ``etag``."""

    owner: LocationOwner | None
    etag: str


class Datastore(Protocol):
    def read_current(self, location: DatastoreLocation) -> StoredCertificate | None:
        """The verified current revision, or None when nothing was published yet."""

    def read_revision(
        self, location: DatastoreLocation, pointer: Pointer, pointer_etag: str
    ) -> StoredCertificate:
        """Fetch and verify the revision a pointer names."""

    def poll_pointer(self, location: DatastoreLocation, etag: str | None) -> PointerPoll:
        """Conditional read of the pointer: unchanged, changed (parsed), or missing."""

    def publish(
        self,
        location: DatastoreLocation,
        fullchain: bytes,
        privkey: bytes,
        serial: str,
        not_before: datetime,
        not_after: datetime,
        expected_pointer_etag: str | None,
        *,
        after_revision: int = 0,
        owner: str = "",
        expected_revision: int | None = None,
    ) -> Pointer:
        """Write a new revision above `after_revision` (the highest the caller has seen),
        verify it, then flip the pointer to it; the pointer names `owner` (the location's
        owner, ``LocationOwner.identity``). `expected_revision`: the revision the pointer of
        `expected_pointer_etag` names, when the caller could read it (saves a read)."""

    def prune(
        self, location: DatastoreLocation, current: int, keep: int, grace: timedelta
    ) -> list[int]:
        """Remove the revisions below `current` beyond the `keep` newest, replaced longer
        than `grace` ago (no agent can still be fetching them); returns the removed ones."""

    def take_lease(
        self, location: DatastoreLocation, holder: str, now: datetime, duration: timedelta
    ) -> LeaseTaken | LeaseHeld:
        """The order lease of `location` (before an ACME order), or who holds it."""

    def release_lease(self, location: DatastoreLocation, taken: LeaseTaken) -> None:
        """Give the lease back (only if it is still the one taken; else a no-op)."""

    def read_claim(self, location: DatastoreLocation) -> LocationClaim | None:
        """Who claimed `location` (its owner), or None when nobody did."""

    def claim(
        self,
        location: DatastoreLocation,
        owner: LocationOwner,
        now: datetime,
        replacing: str | None,
    ) -> LocationClaim:
        """Claim `location` for `owner`: where nobody claimed it (`replacing` None), or in
        place of the claim whose ETag is `replacing`. DatastoreConflictError when another
        claim was written first."""
