"""The location's claim in S3: `<location>/owner.json`, written by conditional writes.

    claim:    PUT owner.json If-None-Match: *     -> owned (nobody had claimed it)
              412                                -> another claimed it first: conflict
    take over PUT owner.json If-Match: the ETag read (the owner judged gone, or handed over)
              412                                -> it changed since: conflict

Example:

    {"format_version": 1, "kind": "ManagedCertificate", "cluster": "<kube-system uid>",
     "name": "shop/www", "uid": "<the resource's uid>", "claimed_at": "2026-12-02T01:00:00Z"}

Who may claim or take over is decided by the pure ``core.ownership``; this module only reads
and writes the object. The claim is never deleted by certfleet: it is how the next claimant
learns whom it replaces.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import TYPE_CHECKING

from certfleet.core.clock import rfc3339
from certfleet.core.ownership import LocationOwner, OwnerKind
from certfleet.datastore.errors import DatastoreConflictError
from certfleet.datastore.location import DatastoreLocation
from certfleet.datastore.protocol import LocationClaim
from certfleet.datastore.s3_objects import get_bounded, put_conditional

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import PutObjectRequestTypeDef

log = logging.getLogger(__name__)

CLAIM_NAME = "owner.json"
CLAIM_FORMAT_VERSION = 1
MAX_CLAIM_BYTES = 4096


def claim_key(location: DatastoreLocation) -> str:
    return f"{location.base_key}/{CLAIM_NAME}"


def claim_to_json(owner: LocationOwner, now: datetime) -> bytes:
    return json.dumps(
        {
            "format_version": CLAIM_FORMAT_VERSION,
            "kind": str(owner.kind),
            "cluster": owner.cluster,
            "name": owner.name,
            "uid": owner.uid,
            "claimed_at": rfc3339(now),
        },
        sort_keys=True,
    ).encode()


def parse_claim(body: bytes) -> LocationOwner | None:
    """None for an object that is not a claim (junk names no owner: it may be replaced)."""
    try:
        fields = json.loads(body)
        if not isinstance(fields, dict) or fields.get("format_version") != CLAIM_FORMAT_VERSION:
            return None
        values = [fields.get(name) for name in ("kind", "name", "uid", "cluster")]
        texts = [value for value in values if isinstance(value, str)]
        if len(texts) != len(values):
            return None
        kind, name, uid, cluster = texts
        return LocationOwner(OwnerKind(kind), name, uid, cluster)
    except (ValueError, RecursionError):  # bad JSON, an unknown kind, bad owner fields
        return None


class S3Claims:
    """The location claims of one bucket's client (the S3Datastore delegates to it)."""

    def __init__(self, client: S3Client) -> None:
        self._client = client

    def read(self, location: DatastoreLocation) -> LocationClaim | None:
        fetched = get_bounded(self._client, location, claim_key(location), MAX_CLAIM_BYTES)
        if fetched is None:
            return None
        owner = parse_claim(fetched.body)
        if owner is None:
            log.warning("%s is not a claim", location.s3_uri_of(claim_key(location)))
        return LocationClaim(owner, fetched.etag)

    def write(
        self,
        location: DatastoreLocation,
        owner: LocationOwner,
        now: datetime,
        replacing: str | None,
    ) -> LocationClaim:
        key = claim_key(location)
        request: PutObjectRequestTypeDef = {
            "Bucket": location.bucket,
            "Key": key,
            "Body": claim_to_json(owner, now),
            "ContentType": "application/json",
            "CacheControl": "no-cache",
        }
        if replacing is None:
            request["IfNoneMatch"] = "*"
        else:
            request["IfMatch"] = replacing
        etag = put_conditional(self._client, location, request)
        if etag is None:
            raise DatastoreConflictError(
                f"{location.s3_uri_of(key)} was claimed by another owner first"
            )
        return LocationClaim(owner, etag)
