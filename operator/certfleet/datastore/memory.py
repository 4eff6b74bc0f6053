"""An in-memory Datastore for unit tests of its callers: the Protocol's promises, no S3.

It keeps what ``S3Datastore`` promises (a revision is written before the pointer moves, the
pointer moves only if it is still the one the caller saw, reads are verified by digest) so a
caller's test means the same as on S3. ``down`` makes every call fail as an outage would.
Keys are kept in memory as given: nothing here is ever persisted.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from certfleet.core.clock import Clock, utc_now
from certfleet.core.leases import StorageLease, may_take_storage_lease, new_storage_lease
from certfleet.core.ownership import LocationOwner
from certfleet.core.retention import revisions_to_remove
from certfleet.datastore.errors import (
    DatastoreConflictError,
    DatastoreIntegrityError,
    DatastoreUnavailableError,
)
from certfleet.datastore.location import DatastoreLocation
from certfleet.datastore.pointer import Pointer
from certfleet.datastore.protocol import (
    LeaseHeld,
    LeaseTaken,
    LocationClaim,
    PointerPoll,
    PollStatus,
    StoredCertificate,
)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class _Folder:
    revisions: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)
    written: dict[int, datetime] = field(default_factory=dict)
    pointer: Pointer | None = None
    etag: str | None = None
    broken: bool = False  # the pointer cannot be followed (corrupt, or an unknown key)
    lease: tuple[StorageLease, str] | None = None  # and its ETag
    claim: LocationClaim | None = None


class InMemoryDatastore:
    def __init__(self, clock: Clock = utc_now) -> None:
        self._clock = clock
        self._folders: dict[DatastoreLocation, _Folder] = {}
        self._etags = itertools.count(1)
        self.down = False
        self.publishes = 0
        self.leases_taken = 0

    def _folder(self, location: DatastoreLocation) -> _Folder:
        if self.down:
            raise DatastoreUnavailableError(f"{location.s3_uri} did not answer")
        return self._folders.setdefault(location, _Folder())

    def read_current(self, location: DatastoreLocation) -> StoredCertificate | None:
        folder = self._folder(location)
        if folder.broken:
            error = DatastoreIntegrityError(f"{location.s3_uri} has a pointer that is not one")
            error.pointer_etag = folder.etag
            raise error
        if folder.pointer is None or folder.etag is None:
            return None
        return self.read_revision(location, folder.pointer, folder.etag)

    def break_pointer(self, location: DatastoreLocation) -> None:
        """What a corrupt current.json does: reads fail, a conditional replace works."""
        folder = self._folder(location)
        folder.broken, folder.etag = True, f'"{next(self._etags)}"'

    def read_revision(
        self, location: DatastoreLocation, pointer: Pointer, pointer_etag: str
    ) -> StoredCertificate:
        stored = self._folder(location).revisions.get(pointer.revision)
        if stored is None:
            raise DatastoreIntegrityError(f"{location.s3_uri} has no revision {pointer.revision}")
        fullchain, privkey = stored
        if (_sha256(fullchain), _sha256(privkey)) != (
            pointer.fullchain_sha256,
            pointer.privkey_sha256,
        ):
            raise DatastoreIntegrityError(f"{location.s3_uri} does not match its pointer")
        return StoredCertificate(pointer, pointer_etag, fullchain, privkey)

    def poll_pointer(self, location: DatastoreLocation, etag: str | None) -> PointerPoll:
        folder = self._folder(location)
        if folder.broken:
            raise DatastoreIntegrityError(f"{location.s3_uri} has a pointer that is not one")
        if folder.pointer is None:
            return PointerPoll(PollStatus.MISSING)
        if etag == folder.etag:
            return PointerPoll(PollStatus.UNCHANGED, etag=etag)
        return PointerPoll(PollStatus.CHANGED, etag=folder.etag, pointer=folder.pointer)

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
        owner: str = "",
    ) -> Pointer:
        folder = self._folder(location)
        if folder.etag != expected_pointer_etag:
            raise DatastoreConflictError(f"{location.s3_uri} was changed by another writer")
        revision = max(folder.revisions, default=0) + 1
        folder.revisions[revision] = (fullchain, privkey)
        folder.written[revision] = self._clock()
        pointer = Pointer(
            revision=revision,
            serial=serial,
            not_before=not_before,
            not_after=not_after,
            fullchain_sha256=_sha256(fullchain),
            privkey_sha256=_sha256(privkey),
            privkey_enc_sha256=_sha256(b"in memory: " + privkey),
            published_at=self._clock().replace(microsecond=0),
            owner=owner,
        )
        folder.pointer, folder.etag = pointer, f'"{next(self._etags)}"'
        folder.broken = False
        self.publishes += 1
        return pointer

    def prune(
        self, location: DatastoreLocation, current: int, keep: int, grace: timedelta
    ) -> list[int]:
        folder = self._folder(location)
        doomed = revisions_to_remove(folder.written, current, keep, self._clock(), grace)
        for revision in doomed:
            del folder.revisions[revision], folder.written[revision]
        return doomed

    def revisions(self, location: DatastoreLocation) -> list[int]:
        """The revisions the location holds (for tests)."""
        return sorted(self._folder(location).revisions)

    def take_lease(
        self, location: DatastoreLocation, holder: str, now: datetime, duration: timedelta
    ) -> LeaseTaken | LeaseHeld:
        folder = self._folder(location)
        if folder.lease is not None and not may_take_storage_lease(folder.lease[0], holder, now):
            return LeaseHeld(folder.lease[0])
        taken = LeaseTaken(new_storage_lease(holder, now, duration), f'"{next(self._etags)}"')
        folder.lease = (taken.lease, taken.etag)
        self.leases_taken += 1
        return taken

    def release_lease(self, location: DatastoreLocation, taken: LeaseTaken) -> None:
        folder = self._folder(location)
        if folder.lease is not None and folder.lease[1] == taken.etag:
            released = StorageLease(taken.lease.holder, taken.lease.expires_at, released=True)
            folder.lease = (released, f'"{next(self._etags)}"')

    def read_claim(self, location: DatastoreLocation) -> LocationClaim | None:
        return self._folder(location).claim

    def claim(
        self,
        location: DatastoreLocation,
        owner: LocationOwner,
        now: datetime,
        replacing: str | None,
    ) -> LocationClaim:
        folder = self._folder(location)
        current = folder.claim.etag if folder.claim is not None else None
        if current != replacing:
            raise DatastoreConflictError(f"{location.s3_uri} was claimed by another owner first")
        folder.claim = LocationClaim(owner, f'"{next(self._etags)}"')
        return folder.claim

    def spoil_claim(self, location: DatastoreLocation) -> None:
        """What junk in owner.json does: a claim naming no owner (for tests)."""
        folder = self._folder(location)
        folder.claim = LocationClaim(None, f'"{next(self._etags)}"')
