"""The S3 order lease's own edges on moto: what it writes, and a lease.json that is junk."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from certfleet.core.leases import StorageLease
from certfleet.datastore.lease import S3Leases, lease_key, lease_to_json, parse_lease
from certfleet.datastore.location import DatastoreLocation
from certfleet.datastore.protocol import LeaseTaken

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

LOCATION = DatastoreLocation("certfleet-unit", "certfleet", "aws", "build-7", "www.example.com")
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def s3(moto_s3: S3Client) -> S3Client:
    moto_s3.create_bucket(Bucket=LOCATION.bucket)
    return moto_s3


def test_the_lease_object_says_who_and_until_when(s3: S3Client) -> None:
    taken = S3Leases(s3).take(LOCATION, "build-a", NOW, timedelta(minutes=10))
    assert isinstance(taken, LeaseTaken)
    body = s3.get_object(Bucket=LOCATION.bucket, Key=lease_key(LOCATION))["Body"].read()
    assert json.loads(body) == {
        "holder": "build-a",
        "expiresAt": "2026-12-01T12:10:00Z",
        "released": False,
    }
    assert lease_key(LOCATION) == "certfleet/aws/build-7/www.example.com/lease.json"


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"{}",
        b'{"holder": 7, "expiresAt": "2026-12-01T12:10:00Z", "released": false}',
        b'{"holder": "a", "expiresAt": "soon", "released": false}',
        b"[]",
    ],
)
def test_junk_is_not_a_holder(body: bytes) -> None:
    assert parse_lease(body) is None


def test_a_junk_lease_object_is_taken_over(s3: S3Client) -> None:
    s3.put_object(Bucket=LOCATION.bucket, Key=lease_key(LOCATION), Body=b"garbage")
    taken = S3Leases(s3).take(LOCATION, "build-a", NOW, timedelta(minutes=10))
    assert isinstance(taken, LeaseTaken)


def test_a_lease_round_trips() -> None:
    lease = StorageLease("build-a", NOW, released=True)
    assert parse_lease(lease_to_json(lease)) == lease


def test_a_holder_name_is_bounded(s3: S3Client) -> None:
    with pytest.raises(ValueError, match="holder"):
        S3Leases(s3).take(LOCATION, "x" * 254, NOW, timedelta(minutes=10))
