"""The S3 datastore: publish a certificate revision, read the current one, poll for changes.

Write protocol (the operator):
 1. Start from the `current.json` the caller decided on: its ETag and the revision it names
    (none: the caller saw no pointer). Only a caller that could not parse the pointer has it
    read again here, for the revisions it must go above.
 2. Write `revisions/N/fullchain.pem` and `revisions/N/privkey.pem.enc` with If-None-Match: *,
    so a revision, once written, is never replaced.
 3. Read both back and compare SHA-256 digests (and decrypt the key) against what was sent.
 4. Only then write `current.json` conditionally: If-None-Match: * when there was no pointer,
    If-Match: ETAG otherwise. Of two concurrent writers exactly one flips the pointer; the
    other gets DatastoreConflictError. Agents therefore never see a half-written revision.

Read protocol (the agent): poll `current.json` with If-None-Match: ETAG (a 304 costs nothing),
then fetch the revision it names and verify every digest before installing anything.

The boto3 client is injected: this module never creates one (nor reads credentials).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from certfleet.core.clock import utc_now
from certfleet.core.ownership import LocationOwner
from certfleet.core.retention import revisions_to_remove
from certfleet.datastore.claim import S3Claims
from certfleet.datastore.encryption import (
    ENVELOPE_OVERHEAD_BYTES,
    ENVELOPE_SCHEME,
    KeyRing,
    MasterKey,
    envelope_decrypt,
    envelope_encrypt,
    key_id_of,
)
from certfleet.datastore.errors import (
    DatastoreConflictError,
    DatastoreIntegrityError,
    DatastoreVerificationError,
)
from certfleet.datastore.lease import S3Leases
from certfleet.datastore.location import REVISIONS_DIR, DatastoreLocation
from certfleet.datastore.pointer import MAX_POINTER_BYTES, Pointer, parse_pointer
from certfleet.datastore.protocol import (
    LeaseHeld,
    LeaseTaken,
    LocationClaim,
    PointerPoll,
    PollStatus,
    StoredCertificate,
)
from certfleet.datastore.s3_errors import (
    is_not_found,
    is_precondition_failed,
    raise_translated,
)
from certfleet.datastore.s3_objects import Fetched as _Fetched
from certfleet.datastore.s3_objects import NotModifiedError as _NotModifiedError
from certfleet.datastore.s3_objects import get_bounded

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import PutObjectRequestTypeDef

log = logging.getLogger(__name__)

# A full chain is a few KiB and a key less: anything near this limit is not ours.
MAX_OBJECT_BYTES = 1024 * 1024
# How many revision numbers publish tries past the pointer's before giving up. Numbers are
# skipped when a publish died after writing its revision but before flipping the pointer.
MAX_REVISION_PROBES = 8

FULLCHAIN_CONTENT_TYPE = "application/pem-certificate-chain"  # RFC 8555, section 9.1
PRIVKEY_CONTENT_TYPE = "application/octet-stream"
POINTER_CONTENT_TYPE = "application/json"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _bare_etag(etag: str) -> str:
    """S3 quotes ETags and some servers mark them weak; compare the opaque value only."""
    value = etag.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"')


class S3Datastore:
    """Certificates in an S3 bucket, one folder per DatastoreLocation.

    `master_keys[0]` is the current key: it encrypts new private keys and authenticates new
    pointers; every key in the list can read (picked by its key id), so a rotation adds the
    new key in front and keeps the old one until nothing sealed with it is current.
    """

    def __init__(
        self,
        client: S3Client,
        master_keys: Sequence[MasterKey],
        *,
        clock: Callable[[], datetime] = utc_now,
        max_object_bytes: int = MAX_OBJECT_BYTES,
    ) -> None:
        if not master_keys:
            raise ValueError("at least one master key is needed")
        self._client = client
        self._keys = KeyRing(master_keys)
        self._clock = clock
        self._max_object_bytes = max_object_bytes

    @property
    def keys(self) -> KeyRing:
        """The master keys it reads with (the current one seals what it writes)."""
        return self._keys

    # -- reading ------------------------------------------------------------------------

    def read_current(self, location: DatastoreLocation) -> StoredCertificate | None:
        """The verified current revision, or None when nothing was published yet."""
        fetched = self._get(location, location.pointer_key, MAX_POINTER_BYTES)
        if fetched is None:
            return None
        try:
            pointer = parse_pointer(fetched.body, location, self._keys)
            return self.read_revision(location, pointer, fetched.etag)
        except DatastoreIntegrityError as error:
            error.pointer_etag = fetched.etag
            raise

    def read_revision(
        self, location: DatastoreLocation, pointer: Pointer, pointer_etag: str
    ) -> StoredCertificate:
        """Fetch and verify the revision a pointer names (the agent calls this after a poll)."""
        fullchain, privkey, blob_key_id = self._read_verified(
            location,
            pointer.revision,
            pointer.fullchain_sha256,
            pointer.privkey_enc_sha256,
            pointer.privkey_sha256,
        )
        current = self._keys.current.key_id_hex
        return StoredCertificate(
            pointer=pointer,
            pointer_etag=pointer_etag,
            fullchain=fullchain,
            privkey=privkey,
            sealed_with_current_key=pointer.key_id == current and blob_key_id == current,
        )

    def _read_verified(
        self,
        location: DatastoreLocation,
        revision: int,
        fullchain_sha256: str,
        blob_sha256: str,
        privkey_sha256: str,
    ) -> tuple[bytes, bytes, str]:
        """A revision's chain, decrypted key and the key's master key id, each checked against
        its expected digest; DatastoreIntegrityError names the object that differs."""
        fullchain_key = location.fullchain_key(revision)
        privkey_key = location.privkey_key(revision)
        fullchain = self._get_required(location, fullchain_key)
        if _sha256(fullchain) != fullchain_sha256:
            raise DatastoreIntegrityError(
                f"{location.s3_uri_of(fullchain_key)} does not match its expected sha256"
            )
        blob = self._get_required(location, privkey_key)
        if _sha256(blob) != blob_sha256:
            raise DatastoreIntegrityError(
                f"{location.s3_uri_of(privkey_key)} does not match its expected sha256"
            )
        # Decrypting proves the master key and the binding to the key work for agents too.
        privkey = envelope_decrypt(blob, self._keys.keys, privkey_key.encode())
        if _sha256(privkey) != privkey_sha256:
            raise DatastoreIntegrityError(
                f"decrypted {location.s3_uri_of(privkey_key)} does not match its expected sha256"
            )
        return fullchain, privkey, key_id_of(blob)

    def poll_pointer(self, location: DatastoreLocation, etag: str | None) -> PointerPoll:
        """Conditional GET of `current.json`: unchanged, changed (parsed), or missing."""
        try:
            fetched = self._get(
                location, location.pointer_key, MAX_POINTER_BYTES, if_none_match=etag
            )
        except _NotModifiedError:
            return PointerPoll(PollStatus.UNCHANGED, etag=etag)
        if fetched is None:
            return PointerPoll(PollStatus.MISSING)
        if etag is not None and _bare_etag(fetched.etag) == _bare_etag(etag):
            # A server that ignores If-None-Match still must not make the agent reinstall.
            return PointerPoll(PollStatus.UNCHANGED, etag=etag)
        return PointerPoll(
            PollStatus.CHANGED,
            etag=fetched.etag,
            pointer=parse_pointer(fetched.body, location, self._keys),
        )

    # -- writing ------------------------------------------------------------------------

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
        """Write a new revision, verify it, then flip the pointer to it (naming `owner`, the
        location's owner, ``LocationOwner.identity``).

        `expected_pointer_etag` is the ETag of the pointer the caller's decision was based on
        (from read_current), None when it saw no pointer; `expected_revision` the revision
        that pointer names, None when the caller could not read it (the pointer is then read
        again). Nothing is read before the write otherwise: the pointer's conditional write
        refuses a pointer changed since, as a read first would. `after_revision` is the highest
        revision the caller has seen at this location: the new one is above it even if the
        pointer was rolled back or the folder emptied, since readers refuse a lower one
        (rollback protection). Raises DatastoreConflictError when
        the pointer changed since, DatastoreVerificationError when the revision does not read
        back as written; success means agents will now see the new revision.
        """
        # Refuse what agents would refuse to read (the envelope adds a fixed overhead).
        limits = (
            ("fullchain", fullchain, self._max_object_bytes),
            ("privkey", privkey, self._max_object_bytes - ENVELOPE_OVERHEAD_BYTES),
        )
        for name, data, limit in limits:
            if not isinstance(data, bytes) or not data:
                raise ValueError(f"{name} must be non-empty bytes")
            if len(data) > limit:
                raise ValueError(f"{name} is larger than {limit} bytes")

        if expected_pointer_etag is None:
            previous_revision, current_etag = 0, None  # If-None-Match: * on the pointer
        elif expected_revision is not None:
            previous_revision, current_etag = expected_revision, expected_pointer_etag
        else:
            previous_revision, current_etag = self._check_expected_pointer(
                location, expected_pointer_etag
            )
        previous_revision = max(previous_revision, after_revision)
        fullchain_sha256 = _sha256(fullchain)
        privkey_sha256 = _sha256(privkey)
        # Built now so a bad serial or time fails before anything is written; the revision
        # and the blob's digest are only known after the write.
        draft = Pointer(
            revision=previous_revision + 1,
            serial=serial,
            not_before=not_before,
            not_after=not_after,
            fullchain_sha256=fullchain_sha256,
            privkey_sha256=privkey_sha256,
            privkey_enc_sha256="0" * 64,
            published_at=self._now(),
            key_id=self._keys.current.key_id_hex,
            owner=owner,
        )
        revision, blob = self._write_revision(location, previous_revision, fullchain, privkey)
        self._verify_revision(location, revision, fullchain_sha256, _sha256(blob), privkey_sha256)

        pointer = dataclasses.replace(
            draft, revision=revision, privkey_enc_sha256=_sha256(blob), published_at=self._now()
        )
        self._write_pointer(location, pointer, current_etag)
        log.info(
            "published %s revision %d (serial %s, not after %s)",
            location.s3_uri,
            revision,
            pointer.serial,
            pointer.not_after.isoformat(),
        )
        return pointer

    def _now(self) -> datetime:
        return self._clock().astimezone(UTC).replace(microsecond=0)

    def _check_expected_pointer(
        self, location: DatastoreLocation, expected_etag: str | None
    ) -> tuple[int, str | None]:
        """The previous revision number and the pointer's ETag, if still as the caller saw it."""
        uri = location.s3_uri_of(location.pointer_key)
        fetched = self._get(location, location.pointer_key, MAX_POINTER_BYTES)
        if fetched is None:
            if expected_etag is not None:
                raise DatastoreConflictError(f"{uri} was removed since it was read")
            return 0, None
        if expected_etag is None:
            raise DatastoreConflictError(f"{uri} was created by another writer since it was read")
        if _bare_etag(fetched.etag) != _bare_etag(expected_etag):
            raise DatastoreConflictError(f"{uri} was changed by another writer since it was read")
        try:
            return parse_pointer(fetched.body, location, self._keys).revision, fetched.etag
        except DatastoreIntegrityError:
            # A broken pointer is replaced, not parsed: new revisions go after every one
            # that exists, so nothing an agent may still hold is overwritten.
            return self._highest_revision(location), fetched.etag

    def _highest_revision(self, location: DatastoreLocation) -> int:
        """The highest revision number under the location (0 when there is none)."""
        return max(self._revisions_written(location), default=0)

    def _revisions_written(self, location: DatastoreLocation) -> dict[int, datetime]:
        """Each revision under the location, and when its newest object was written."""
        prefix = f"{location.base_key}/{REVISIONS_DIR}/"
        written: dict[int, datetime] = {}
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=location.bucket, Prefix=prefix, PaginationConfig={"MaxItems": 10_000}
            )
            for page in pages:
                for item in page.get("Contents", []):
                    number = item.get("Key", "")[len(prefix) :].split("/", 1)[0]
                    modified = item.get("LastModified")
                    if number.isdigit() and len(number) <= 12 and modified is not None:
                        revision = int(number)
                        written[revision] = max(written.get(revision, modified), modified)
        except (ClientError, BotoCoreError) as exc:
            raise_translated(exc, operation="ListObjectsV2", uri=location.s3_uri)
        return written

    def prune(
        self, location: DatastoreLocation, current: int, keep: int, grace: timedelta
    ) -> list[int]:
        """Removes the revisions nothing can still need (``core.retention``); returns them."""
        if current <= max(keep, 0):
            # At most `current` revisions (0 to current - 1) are below it, all of them among
            # the `keep` kept: nothing to remove, no listing needed (every early publish).
            return []
        doomed = revisions_to_remove(
            self._revisions_written(location), current, keep, self._now(), grace
        )
        for revision in doomed:
            for key in (location.fullchain_key(revision), location.privkey_key(revision)):
                try:
                    self._client.delete_object(Bucket=location.bucket, Key=key)
                except (ClientError, BotoCoreError) as exc:
                    raise_translated(exc, operation="DeleteObject", uri=location.s3_uri_of(key))
        if doomed:
            log.info("removed old revisions %s of %s", doomed, location.s3_uri)
        return doomed

    def _write_revision(
        self,
        location: DatastoreLocation,
        previous_revision: int,
        fullchain: bytes,
        privkey: bytes,
    ) -> tuple[int, bytes]:
        """Create the first free revision after `previous_revision`; return it and the blob.
        After MAX_REVISION_PROBES taken in a row (unfinished publishes pile up), it lists the
        revisions once and goes on after the highest."""
        written = self._try_revisions(location, previous_revision, fullchain, privkey)
        if written is None:
            highest = self._highest_revision(location)
            if highest > previous_revision:
                written = self._try_revisions(location, highest, fullchain, privkey)
        if written is None:
            raise DatastoreConflictError(
                f"{location.s3_uri}: the revisions after {previous_revision} are being written "
                "by another writer, or cannot be listed; clean up the unreferenced revisions"
            )
        return written

    def _try_revisions(
        self,
        location: DatastoreLocation,
        previous_revision: int,
        fullchain: bytes,
        privkey: bytes,
    ) -> tuple[int, bytes] | None:
        for revision in range(previous_revision + 1, previous_revision + 1 + MAX_REVISION_PROBES):
            fullchain_key = location.fullchain_key(revision)
            try:
                self._put(
                    location,
                    {
                        "Bucket": location.bucket,
                        "Key": fullchain_key,
                        "Body": fullchain,
                        "ContentType": FULLCHAIN_CONTENT_TYPE,
                        "IfNoneMatch": "*",
                    },
                )
            except DatastoreConflictError:
                # Left by a publish that died before its pointer write, or a concurrent writer
                # (which the pointer write will sort out): either way, never overwrite it.
                log.warning(
                    "%s exists already (an unfinished earlier publish, or a concurrent "
                    "writer); trying the next revision",
                    location.s3_uri_of(fullchain_key),
                )
                continue
            privkey_key = location.privkey_key(revision)
            # The S3 key is the associated data: the blob cannot be moved to another revision.
            blob = envelope_encrypt(privkey, self._keys.current, privkey_key.encode())
            self._put(
                location,
                {
                    "Bucket": location.bucket,
                    "Key": privkey_key,
                    "Body": blob,
                    "ContentType": PRIVKEY_CONTENT_TYPE,
                    "Metadata": {
                        "certfleet-encryption": ENVELOPE_SCHEME,
                        "certfleet-master-key-id": self._keys.current.key_id_hex,
                    },
                    "IfNoneMatch": "*",
                },
            )
            return revision, blob
        return None

    def _verify_revision(
        self,
        location: DatastoreLocation,
        revision: int,
        fullchain_sha256: str,
        blob_sha256: str,
        privkey_sha256: str,
    ) -> None:
        """Read the revision back; any difference is a DatastoreVerificationError."""
        try:
            self._read_verified(location, revision, fullchain_sha256, blob_sha256, privkey_sha256)
        except DatastoreIntegrityError as exc:
            raise DatastoreVerificationError(
                f"revision {revision} did not read back as written, the pointer was not "
                f"changed: {exc}"
            ) from exc

    def _write_pointer(
        self, location: DatastoreLocation, pointer: Pointer, current_etag: str | None
    ) -> None:
        request: PutObjectRequestTypeDef = {
            "Bucket": location.bucket,
            "Key": location.pointer_key,
            "Body": pointer.to_json(location, self._keys.current),
            "ContentType": POINTER_CONTENT_TYPE,
            # Agents poll it; no cache in between may serve an old one.
            "CacheControl": "no-cache",
        }
        if current_etag is None:
            request["IfNoneMatch"] = "*"
        else:
            request["IfMatch"] = current_etag
        self._put(location, request, missing_is_conflict=True)

    # -- the order lease (datastore.lease) ----------------------------------------------

    def take_lease(
        self, location: DatastoreLocation, holder: str, now: datetime, duration: timedelta
    ) -> LeaseTaken | LeaseHeld:
        return S3Leases(self._client).take(location, holder, now, duration)

    def release_lease(self, location: DatastoreLocation, taken: LeaseTaken) -> None:
        S3Leases(self._client).release(location, taken)

    # -- the location's claim (datastore.claim) -----------------------------------------

    def read_claim(self, location: DatastoreLocation) -> LocationClaim | None:
        return S3Claims(self._client).read(location)

    def claim(
        self,
        location: DatastoreLocation,
        owner: LocationOwner,
        now: datetime,
        replacing: str | None,
    ) -> LocationClaim:
        return S3Claims(self._client).write(location, owner, now, replacing)

    # -- S3 calls -----------------------------------------------------------------------

    def _put(
        self,
        location: DatastoreLocation,
        request: PutObjectRequestTypeDef,
        *,
        missing_is_conflict: bool = False,
    ) -> None:
        uri = location.s3_uri_of(request["Key"])
        try:
            self._client.put_object(**request)
        except ClientError as exc:
            if is_precondition_failed(exc) or (missing_is_conflict and is_not_found(exc)):
                # If-Match on a key deleted meanwhile answers 404 NoSuchKey: also a conflict.
                raise DatastoreConflictError(
                    f"PutObject {uri} refused: another writer changed it first"
                ) from exc
            raise_translated(exc, operation="PutObject", uri=uri)
        except BotoCoreError as exc:
            raise_translated(exc, operation="PutObject", uri=uri)

    def _get_required(self, location: DatastoreLocation, key: str) -> bytes:
        fetched = self._get(location, key, self._max_object_bytes)
        if fetched is None:
            raise DatastoreIntegrityError(
                f"{location.s3_uri_of(key)} is missing, yet the pointer names its revision"
            )
        return fetched.body

    def _get(
        self,
        location: DatastoreLocation,
        key: str,
        limit: int,
        *,
        if_none_match: str | None = None,
    ) -> _Fetched | None:
        """GET with a size bound; None when the object does not exist.

        With `if_none_match`, raises _NotModifiedError when the server answers 304.
        """
        return get_bounded(self._client, location, key, limit, if_none_match=if_none_match)
