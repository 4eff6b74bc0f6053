"""What one reconciliation costs in S3 requests, counted on moto: the reconciler over the real
S3Datastore, with the fakes of test_reconcile at its other edges. Every request is listed with
the promise it keeps, so a redundant one shows up here."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import pytest

from certfleet.api.spec import CloudHostConfig, parse_cloudhost
from certfleet.datastore.encryption import MasterKey
from certfleet.datastore.errors import DatastoreConflictError
from certfleet.datastore.location import DatastoreLocation
from certfleet.datastore.protocol import Datastore
from certfleet.datastore.s3_store import S3Datastore
from unit.controller.resources import BUCKET, DOMAIN
from unit.controller.test_reconcile import FakeWorld, certificate, reconcile
from unit.core.certificates import DAY, NOW

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

LOCATION = DatastoreLocation(BUCKET, "certfleet", "aws", "build-7", DOMAIN)
Request = tuple[str, str, str]  # operation, key (relative to the location), condition


class S3World(FakeWorld):
    """test_reconcile's world, its datastore on moto's S3."""

    s3: S3Datastore

    def datastore(self, cloudhost: str) -> tuple[CloudHostConfig, Datastore]:
        return parse_cloudhost(cloudhost, self.cloudhosts[cloudhost]["spec"]), self.s3


@pytest.fixture
def world(moto_s3: S3Client) -> S3World:
    moto_s3.create_bucket(Bucket=BUCKET)
    world = S3World()
    world.s3 = S3Datastore(moto_s3, [MasterKey(os.urandom(32))], clock=lambda: NOW)
    return world


@pytest.fixture
def sent(moto_s3: S3Client) -> list[Request]:
    requests: list[Request] = []
    base = f"{LOCATION.base_key}/"

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        key = str(params.get("Key") or params.get("Prefix", ""))
        condition = "If-None-Match" if "IfNoneMatch" in params else ""
        condition = "If-Match" if "IfMatch" in params else condition
        requests.append((model.name, key.removeprefix(base), condition))

    moto_s3.meta.events.register("provide-client-params.s3.*", record)
    return requests


def test_a_new_certificate_costs_twelve_s3_requests(world: S3World, sent: list[Request]) -> None:
    outcome = reconcile(world)
    assert (outcome.ready, outcome.reason, outcome.revision) == (True, "Issued", 1)
    assert sent == [
        # The world as gathered: who owns the location, and a certificate to reuse.
        ("GetObject", "owner.json", ""),
        ("GetObject", "current.json", ""),
        # The claim; then straight on to the order lease (exactly one orderer), no gather
        # in between: the lease's own gather follows.
        ("PutObject", "owner.json", "If-None-Match"),
        ("PutObject", "lease.json", "If-None-Match"),
        # Under the lease, the world again: still the owner, and nothing published meanwhile.
        ("GetObject", "owner.json", ""),
        ("GetObject", "current.json", ""),
        # The publish: nothing read first (the pointer's condition is the check), the
        # revision written, read back and compared, then the pointer; no listing to prune.
        ("PutObject", "revisions/1/fullchain.pem", "If-None-Match"),
        ("PutObject", "revisions/1/privkey.pem.enc", "If-None-Match"),
        ("GetObject", "revisions/1/fullchain.pem", ""),
        ("GetObject", "revisions/1/privkey.pem.enc", ""),
        ("PutObject", "current.json", "If-None-Match"),
        # The lease given back.
        ("PutObject", "lease.json", "If-Match"),
    ]


def test_a_renewal_does_not_read_the_pointer_again_to_publish(
    world: S3World, sent: list[Request]
) -> None:
    reconcile(world)
    world.ca.next_certificate = certificate(NOW + 82 * DAY, NOW + 172 * DAY)
    sent.clear()
    outcome = reconcile(world, now=NOW + 83 * DAY)
    assert (outcome.ready, outcome.reason, outcome.revision) == (True, "Issued", 2)
    publish = sent[sent.index(("PutObject", "revisions/2/fullchain.pem", "If-None-Match")) - 1 :]
    # The last read before the revision's write is the gather's, under the lease.
    assert publish[0] == ("GetObject", "revisions/1/privkey.pem.enc", "")
    assert [request for request in publish if request[1] == "current.json"] == [
        ("PutObject", "current.json", "If-Match")
    ]


class LostClaimRace(S3Datastore):
    """Another writer's claim came first: the same resource, from another cluster (so the
    claim still names this resource) wrote it a moment before."""

    def claim(self, *args: Any, **kwargs: Any) -> Any:
        super().claim(*args, **kwargs)
        raise DatastoreConflictError("owner.json was claimed by another owner first")


def test_after_a_lost_claim_race_the_world_is_gathered_again(
    world: S3World, moto_s3: S3Client, sent: list[Request]
) -> None:
    world.s3 = LostClaimRace(moto_s3, [MasterKey(os.urandom(32))], clock=lambda: NOW)
    outcome = reconcile(world)
    assert outcome.reason == "Issued"
    reads = [request for request in sent if request == ("GetObject", "owner.json", "")]
    assert len(reads) == 3, "the first look, again after the lost race, and under the lease"


def test_reusing_from_a_location_nobody_claimed_gathers_once(
    world: S3World, moto_s3: S3Client, sent: list[Request]
) -> None:
    """A certificate an older certfleet (or the toolkit) published, found by a new cluster:
    the claim is conditional and the reuse reads nothing more, so nothing is read twice."""
    reconcile(world)
    moto_s3.delete_object(Bucket=BUCKET, Key=f"{LOCATION.base_key}/owner.json")
    world.secrets.items.clear()  # a new cluster: no cache Secret
    sent.clear()
    outcome = reconcile(world)
    assert (outcome.ready, outcome.reason, world.ca.orders) == (True, "Reused", 1)
    assert sent == [
        ("GetObject", "owner.json", ""),
        ("GetObject", "current.json", ""),
        ("GetObject", "revisions/1/fullchain.pem", ""),
        ("GetObject", "revisions/1/privkey.pem.enc", ""),
        ("PutObject", "owner.json", "If-None-Match"),
    ]
