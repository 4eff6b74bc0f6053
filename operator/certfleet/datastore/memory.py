"""An in-memory Datastore for unit tests of its callers: the Protocol's promises, no S3.

It keeps what ``S3Datastore`` promises (a revision is written before the pointer moves, the
pointer moves only if it is still the one the caller saw, reads are verified by digest) so a
caller's test means the same as on S3. Pointers are kept as the bytes S3 would hold and
authenticated on every read with the store's master keys (``master_keys``, the current one
first; tests may replace them, as a rotation does), so a tampered or copied pointer fails
here as it does there. ``down`` makes every call fail as an outage would. Private keys are
kept in memory as given (not encrypted): nothing here is ever persisted.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from certfleet.core.clock import Clock, utc_now
from certfleet.core.leases import StorageLease, may_take_storage_lease, new_storage_lease
from certfleet.core.ownership import LocationOwner
from certfleet.core.retention import revisions_to_remove
from certfleet.datastore.encryption import KeyRing, MasterKey
from certfleet.datastore.errors import (
    DatastoreConflictError,
    DatastoreIntegrityError,
    DatastoreUnavailableError,
    UnknownMasterKeyError,
)
from certfleet.datastore.location import DatastoreLocation
from certfleet.datastore.pointer import Pointer, parse_pointer
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
    # fullchain, private key, and the id of the master key it was sealed with
    revisions: dict[int, tuple[bytes, bytes, str]] = field(default_factory=dict)
    written: dict[int, datetime] = field(default_factory=dict)
    pointer: bytes | None = None  # as S3 would hold it
    etag: str | None = None
    lease: tuple[StorageLease, str] | None = None  # and its ETag
    claim: LocationClaim | None = None


class InMemoryDatastore:
    def __init__(self, clock: Clock = utc_now, master_keys: Sequence[MasterKey] = ()) -> None:
        self._clock = clock
        self.master_keys: Sequence[MasterKey] = master_keys or (MasterKey(os.urandom(32)),)
        self._folders: dict[DatastoreLocation, _Folder] = {}
        self._etags = itertools.count(1)
        self.down = False
        self.publishes = 0
        self.leases_taken = 0

    def _folder(self, location: DatastoreLocation) -> _Folder:
        if self.down:
            raise DatastoreUnavailableError(f"{location.s3_uri} did not answer")
        return self._folders.setdefault(location, _Folder())

    @property
    def _keys(self) -> KeyRing:
        return KeyRing(self.master_keys)

    def _parsed(self, location: DatastoreLocation, folder: _Folder) -> Pointer | None:
        if folder.pointer is None:
            return None
        return parse_pointer(folder.pointer, location, self._keys)

    def read_current(self, location: DatastoreLocation) -> StoredCertificate | None:
        folder = self._folder(location)
        if folder.pointer is None or folder.etag is None:
            return None
        try:
            pointer = self._parsed(location, folder)
            assert pointer is not None
            return self.read_revision(location, pointer, folder.etag)
        except DatastoreIntegrityError as error:
            error.pointer_etag = folder.etag
            raise

    def break_pointer(self, location: DatastoreLocation) -> None:
        """What a corrupt current.json does: reads fail, a conditional replace works."""
        self.overwrite_pointer(location, b"{not a pointer")

    def overwrite_pointer(self, location: DatastoreLocation, data: bytes) -> None:
        """Put any bytes where the pointer is (a test's tampering; a new ETag)."""
        folder = self._folder(location)
        folder.pointer, folder.etag = data, f'"{next(self._etags)}"'

    def pointer_bytes(self, location: DatastoreLocation) -> bytes | None:
        """The pointer as stored (for tests)."""
        return self._folder(location).pointer

    def read_revision(
        self, location: DatastoreLocation, pointer: Pointer, pointer_etag: str
    ) -> StoredCertificate:
        stored = self._folder(location).revisions.get(pointer.revision)
        if stored is None:
            raise DatastoreIntegrityError(f"{location.s3_uri} has no revision {pointer.revision}")
        fullchain, privkey, key_id = stored
        if (_sha256(fullchain), _sha256(privkey)) != (
            pointer.fullchain_sha256,
            pointer.privkey_sha256,
        ):
            raise DatastoreIntegrityError(f"{location.s3_uri} does not match its pointer")
        if self._keys.find(key_id) is None:
            raise UnknownMasterKeyError(
                f"revision {pointer.revision} was sealed with master key id {key_id}"
            )
        current = self._keys.current.key_id_hex
        return StoredCertificate(
            pointer, pointer_etag, fullchain, privkey, pointer.key_id == current == key_id
        )

    def poll_pointer(self, location: DatastoreLocation, etag: str | None) -> PointerPoll:
        folder = self._folder(location)
        if folder.pointer is None:
            return PointerPoll(PollStatus.MISSING)
        if etag == folder.etag:
            return PointerPoll(PollStatus.UNCHANGED, etag=etag)
        return PointerPoll(
            PollStatus.CHANGED, etag=folder.etag, pointer=self._parsed(location, folder)
        )

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
        folder = self._folder(location)  # its ETag is checked in place of expected_revision
        if folder.etag != expected_pointer_etag:
            raise DatastoreConflictError(f"{location.s3_uri} was changed by another writer")
        revision = max(max(folder.revisions, default=0), after_revision) + 1
        key = self._keys.current
        pointer = Pointer(
            revision=revision,
            serial=serial,
            not_before=not_before,
            not_after=not_after,
            fullchain_sha256=_sha256(fullchain),
            privkey_sha256=_sha256(privkey),
            privkey_enc_sha256=_sha256(b"in memory: " + privkey),
            published_at=self._clock().replace(microsecond=0),
            key_id=key.key_id_hex,
            owner=owner,
        )
        folder.revisions[revision] = (fullchain, privkey, key.key_id_hex)
        folder.written[revision] = self._clock()
        folder.pointer, folder.etag = pointer.to_json(location, key), f'"{next(self._etags)}"'
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
