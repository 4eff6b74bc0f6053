"""owner.json on S3 (moto): the claim's document, and junk that names no owner."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import pytest

from certfleet.core.clock import rfc3339
from certfleet.core.ownership import LocationOwner
from certfleet.datastore.claim import claim_key, claim_to_json, parse_claim
from certfleet.datastore.encryption import MasterKey
from certfleet.datastore.errors import DatastoreIntegrityError
from certfleet.datastore.location import DatastoreLocation
from certfleet.datastore.s3_store import S3Datastore
from unit.core.certificates import NOW

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

LOCATION = DatastoreLocation("certfleet-unit", "certfleet", "aws", "build-7", "www.example.com")
SHOP = LocationOwner.resource("cluster-1", "shop", "www", "uid-1")


@pytest.fixture
def store(moto_s3: S3Client) -> S3Datastore:
    moto_s3.create_bucket(Bucket=LOCATION.bucket)
    return S3Datastore(moto_s3, [MasterKey(os.urandom(32))], clock=lambda: NOW)


def test_the_claim_document_round_trips() -> None:
    document = json.loads(claim_to_json(SHOP, NOW))
    assert document == {
        "format_version": 1,
        "kind": "ManagedCertificate",
        "cluster": "cluster-1",
        "name": "shop/www",
        "uid": "uid-1",
        "claimed_at": rfc3339(NOW),
    }
    assert parse_claim(claim_to_json(SHOP, NOW)) == SHOP
    machines = LocationOwner.build_machines("prod")
    assert parse_claim(claim_to_json(machines, NOW)) == machines


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\xff\xfe",
        b"[]",
        b'{"format_version": 2, "kind": "ManagedCertificate", "name": "a/b", "uid": "", '
        b'"cluster": ""}',
        b'{"format_version": 1, "kind": "Person", "name": "a/b", "uid": "", "cluster": ""}',
        b'{"format_version": 1, "kind": "ManagedCertificate", "name": "no-slash", "uid": "", '
        b'"cluster": ""}',
        b'{"format_version": 1, "kind": "BuildMachines", "name": 7, "uid": "", "cluster": ""}',
        b'{"format_version": 1, "kind": "BuildMachines", "name": "a b\\n", "uid": "", '
        b'"cluster": ""}',
        b"[" * 5000,
    ],
)
def test_junk_names_no_owner(body: bytes) -> None:
    assert parse_claim(body) is None


def test_junk_in_owner_json_reads_as_a_claim_of_nobody_that_can_be_replaced(
    store: S3Datastore, moto_s3: S3Client
) -> None:
    moto_s3.put_object(Bucket=LOCATION.bucket, Key=claim_key(LOCATION), Body=b"junk")
    junk = store.read_claim(LOCATION)
    assert junk is not None and junk.owner is None
    store.claim(LOCATION, SHOP, NOW, junk.etag)
    read = store.read_claim(LOCATION)
    assert read is not None and read.owner == SHOP


def test_a_huge_owner_json_is_an_integrity_error(store: S3Datastore, moto_s3: S3Client) -> None:
    moto_s3.put_object(Bucket=LOCATION.bucket, Key=claim_key(LOCATION), Body=b" " * 5000)
    with pytest.raises(DatastoreIntegrityError):
        store.read_claim(LOCATION)


def test_the_claim_lives_beside_the_pointer() -> None:
    assert claim_key(LOCATION) == "certfleet/aws/build-7/www.example.com/owner.json"
