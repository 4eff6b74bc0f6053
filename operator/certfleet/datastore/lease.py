"""The order lease in S3: `<location>/lease.json`, taken and given back by conditional writes.

    take:    PUT lease.json If-None-Match: *        -> taken (nobody had one)
             412: GET it; held and not expired      -> held by another (who, until when)
                  free (expired, released, junk)    -> PUT If-Match: its ETag -> taken, or
                                                       412: another machine was faster: held
    release: PUT a released lease If-Match: ours    -> 412: it expired and was taken: no-op

As Caddy's storage lock, and with its caveat: a lease is only as good as the clocks that judge
its expiry, so it lasts much longer than an order takes. Whether it may be taken is decided by
the pure ``core.leases``; this module only reads and writes the object.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from certfleet.core.clock import parse_rfc3339, rfc3339
from certfleet.core.leases import StorageLease, may_take_storage_lease, new_storage_lease
from certfleet.datastore.location import DatastoreLocation
from certfleet.datastore.protocol import LeaseHeld, LeaseTaken
from certfleet.datastore.s3_objects import get_bounded, put_conditional

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import PutObjectRequestTypeDef

log = logging.getLogger(__name__)

LEASE_NAME = "lease.json"
MAX_LEASE_BYTES = 4096
MAX_HOLDER_LENGTH = 253
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def lease_key(location: DatastoreLocation) -> str:
    return f"{location.base_key}/{LEASE_NAME}"


def lease_to_json(lease: StorageLease) -> bytes:
    return json.dumps(
        {"holder": lease.holder, "expiresAt": rfc3339(lease.expires_at), "released": lease.released}
    ).encode()


def parse_lease(body: bytes) -> StorageLease | None:
    """None for a lease that cannot be read (junk is not a holder: it may be taken over)."""
    try:
        fields = json.loads(body)
        holder, released = fields["holder"], fields["released"]
        expires = parse_rfc3339(fields["expiresAt"])
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(holder, str) or not 0 < len(holder) <= MAX_HOLDER_LENGTH:
        return None
    if not isinstance(released, bool) or expires is None:
        return None
    return StorageLease(holder, expires, released)


class S3Leases:
    """The order leases of one bucket's client (the S3Datastore delegates to it)."""

    def __init__(self, client: S3Client) -> None:
        self._client = client

    def take(
        self, location: DatastoreLocation, holder: str, now: datetime, duration: timedelta
    ) -> LeaseTaken | LeaseHeld:
        if not holder or len(holder) > MAX_HOLDER_LENGTH:
            raise ValueError(f"a lease holder is 1 to {MAX_HOLDER_LENGTH} characters")
        wanted = new_storage_lease(holder, now, duration)
        etag = self._put(location, wanted, if_none_match=True)
        if etag is not None:
            return LeaseTaken(wanted, etag)
        found = self._get(location)
        if found is None:  # released and deleted in between: the next attempt sees it free
            return LeaseHeld(StorageLease("(unknown)", now))
        current, current_etag = found
        if current is not None and not may_take_storage_lease(current, holder, now):
            return LeaseHeld(current)
        if current is None:
            log.warning(
                "%s is not a lease; taking it over", location.s3_uri_of(lease_key(location))
            )
        etag = self._put(location, wanted, if_match=current_etag)
        if etag is None:  # another machine took the free lease first
            found = self._get(location)
            held = found[0] if found is not None else None
            return LeaseHeld(held or StorageLease("(unknown)", now + duration))
        return LeaseTaken(wanted, etag)

    def release(self, location: DatastoreLocation, taken: LeaseTaken) -> None:
        released = StorageLease(taken.lease.holder, _EPOCH, released=True)
        if self._put(location, released, if_match=taken.etag) is None:
            log.warning(
                "%s was taken by another machine after this one's lease expired",
                location.s3_uri_of(lease_key(location)),
            )

    def _put(
        self,
        location: DatastoreLocation,
        lease: StorageLease,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
    ) -> str | None:
        """The new ETag, or None when the condition did not hold."""
        request: PutObjectRequestTypeDef = {
            "Bucket": location.bucket,
            "Key": lease_key(location),
            "Body": lease_to_json(lease),
            "ContentType": "application/json",
            "CacheControl": "no-cache",
        }
        if if_none_match:
            request["IfNoneMatch"] = "*"
        if if_match is not None:
            request["IfMatch"] = if_match
        return put_conditional(self._client, location, request)

    def _get(self, location: DatastoreLocation) -> tuple[StorageLease | None, str] | None:
        fetched = get_bounded(self._client, location, lease_key(location), MAX_LEASE_BYTES)
        if fetched is None:
            return None
        return parse_lease(fetched.body), fetched.etag
