"""The two S3 calls every datastore object goes through: a size-bounded GET and a conditional
PUT, each with its errors translated once (``s3_errors``). The datastore, its order leases and
its location claims share them, so a new rule (a bound, an error) holds for all three."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from certfleet.datastore.errors import DatastoreError, DatastoreIntegrityError
from certfleet.datastore.location import DatastoreLocation
from certfleet.datastore.s3_errors import (
    is_not_found,
    is_not_modified,
    is_precondition_failed,
    raise_translated,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import GetObjectRequestTypeDef, PutObjectRequestTypeDef


@dataclasses.dataclass(frozen=True, slots=True)
class Fetched:
    body: bytes
    etag: str


class NotModifiedError(Exception):
    """A conditional GET answered 304 (the caller turns it into "unchanged")."""


def get_bounded(
    client: S3Client,
    location: DatastoreLocation,
    key: str,
    limit: int,
    *,
    if_none_match: str | None = None,
) -> Fetched | None:
    """GET with a size bound; None when the object does not exist. An object over `limit`
    is a DatastoreIntegrityError; with `if_none_match`, a 304 raises NotModifiedError."""
    uri = location.s3_uri_of(key)
    request: GetObjectRequestTypeDef = {"Bucket": location.bucket, "Key": key}
    if if_none_match is not None:
        request["IfNoneMatch"] = if_none_match
    try:
        response = client.get_object(**request)
    except ClientError as exc:
        if if_none_match is not None and is_not_modified(exc):
            raise NotModifiedError from None
        if is_not_found(exc):
            return None
        raise_translated(exc, operation="GetObject", uri=uri)
    except BotoCoreError as exc:
        raise_translated(exc, operation="GetObject", uri=uri)

    body = response["Body"]
    try:
        # Refuse before reading when the server says it is too big; read with a bound in
        # case it does not say, or says wrong.
        length = response.get("ContentLength")
        if isinstance(length, int) and length > limit:
            raise DatastoreIntegrityError(f"{uri} is {length} bytes, over the {limit} limit")
        try:
            data = body.read(limit + 1)
        except BotoCoreError as exc:
            raise_translated(exc, operation="GetObject", uri=uri)
        if len(data) > limit:
            raise DatastoreIntegrityError(f"{uri} is over the {limit} byte limit")
    finally:
        body.close()
    etag = response.get("ETag")
    if not isinstance(etag, str) or not etag:
        raise DatastoreError(f"GetObject {uri}: the server sent no ETag")
    return Fetched(body=data, etag=etag)


def put_conditional(
    client: S3Client, location: DatastoreLocation, request: PutObjectRequestTypeDef
) -> str | None:
    """PUT with the request's If-None-Match / If-Match: the new ETag, or None when the
    condition did not hold (412; or 404 for an If-Match on an object deleted meanwhile)."""
    uri = location.s3_uri_of(request["Key"])
    try:
        response = client.put_object(**request)
    except ClientError as exc:
        if is_precondition_failed(exc) or ("IfMatch" in request and is_not_found(exc)):
            return None
        raise_translated(exc, operation="PutObject", uri=uri)
    except BotoCoreError as exc:
        raise_translated(exc, operation="PutObject", uri=uri)
    etag = response.get("ETag")
    if not isinstance(etag, str) or not etag:
        raise DatastoreError(f"PutObject {uri}: the server sent no ETag")
    return etag
