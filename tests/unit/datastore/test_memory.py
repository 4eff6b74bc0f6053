"""The in-memory Datastore keeps the Protocol's promises, as the S3 one does: the same
contract, run against both (moto in place of S3), so callers' unit tests mean what they say."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from certfleet.core.ownership import LocationOwner
from certfleet.datastore.encryption import MasterKey
from certfleet.datastore.errors import (
    DatastoreConflictError,
    DatastoreUnavailableError,
    PointerMacError,
    UnauthenticatedPointerError,
    UnknownMasterKeyError,
)
from certfleet.datastore.location import DatastoreLocation
from certfleet.datastore.memory import InMemoryDatastore
from certfleet.datastore.protocol import Datastore, LeaseHeld, LeaseTaken, PollStatus
from certfleet.datastore.s3_store import S3Datastore
from unit.core.certificates import NOW

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

LOCATION = DatastoreLocation("certfleet-unit", "certfleet", "aws", "build-7", "www.example.com")
CHAIN, KEY = b"-----BEGIN CERTIFICATE-----\nchain\n", b"-----BEGIN PRIVATE KEY-----\nkey\n"


def in_memory(_s3: S3Client) -> Datastore:
    return InMemoryDatastore(lambda: NOW)


def on_s3(s3: S3Client) -> Datastore:
    s3.create_bucket(Bucket=LOCATION.bucket)
    return S3Datastore(s3, [MasterKey(os.urandom(32))], clock=lambda: NOW)


@pytest.fixture(params=[in_memory, on_s3], ids=["memory", "s3"])
def store(request: pytest.FixtureRequest, moto_s3: S3Client) -> Datastore:
    make: Callable[[S3Client], Datastore] = request.param
    return make(moto_s3)


def publish(store: Datastore, serial: str, expected: str | None) -> int:
    pointer = store.publish(
        LOCATION, CHAIN + serial.encode(), KEY, serial, NOW, NOW + timedelta(days=90), expected
    )
    return pointer.revision


def test_nothing_published_reads_as_none(store: Datastore) -> None:
    assert store.read_current(LOCATION) is None
    assert store.poll_pointer(LOCATION, None).status is PollStatus.MISSING


def test_a_publish_reads_back_verified(store: Datastore) -> None:
    assert publish(store, "0a", None) == 1
    current = store.read_current(LOCATION)
    assert current is not None
    assert (current.fullchain, current.privkey) == (CHAIN + b"0a", KEY)
    assert current.pointer.serial == "0a"


def test_the_next_publish_must_name_the_pointer_it_saw(store: Datastore) -> None:
    publish(store, "0a", None)
    with pytest.raises(DatastoreConflictError):
        publish(store, "0b", None)  # saw nothing, but something is there now
    current = store.read_current(LOCATION)
    assert current is not None
    # Revision numbers may have gaps: on S3 the refused publish learns of the pointer only
    # at its conditional write, and leaves its unreferenced revision 2 behind.
    assert publish(store, "0b", current.pointer_etag) >= 2
    with pytest.raises(DatastoreConflictError):
        publish(store, "0c", current.pointer_etag)  # stale: revision 2 moved it


def test_polls_answer_unchanged_until_the_pointer_moves(store: Datastore) -> None:
    publish(store, "0a", None)
    first = store.poll_pointer(LOCATION, None)
    assert first.status is PollStatus.CHANGED and first.pointer is not None
    assert store.poll_pointer(LOCATION, first.etag).status is PollStatus.UNCHANGED
    publish(store, "0b", first.etag)
    moved = store.poll_pointer(LOCATION, first.etag)
    assert moved.status is PollStatus.CHANGED and moved.pointer is not None
    assert moved.pointer.revision == 2
    assert moved.etag is not None
    revision = store.read_revision(LOCATION, moved.pointer, moved.etag)
    assert revision.fullchain == CHAIN + b"0b"


def test_an_outage_fails_every_call_of_the_in_memory_store() -> None:
    store = InMemoryDatastore(lambda: NOW)
    store.down = True
    with pytest.raises(DatastoreUnavailableError):
        store.read_current(LOCATION)
    with pytest.raises(DatastoreUnavailableError):
        publish(store, "0a", None)


# -- the order lease: the same contract on both -----------------------------------------------

MINUTES_10 = timedelta(minutes=10)


def test_of_two_machines_one_takes_the_order_lease(store: Datastore) -> None:
    first = store.take_lease(LOCATION, "build-a", NOW, MINUTES_10)
    second = store.take_lease(LOCATION, "build-b", NOW, MINUTES_10)
    assert isinstance(first, LeaseTaken) and first.lease.holder == "build-a"
    assert isinstance(second, LeaseHeld)
    assert (second.lease.holder, second.lease.expires_at) == ("build-a", NOW + MINUTES_10)


def test_a_released_order_lease_is_taken_by_the_next(store: Datastore) -> None:
    first = store.take_lease(LOCATION, "build-a", NOW, MINUTES_10)
    assert isinstance(first, LeaseTaken)
    store.release_lease(LOCATION, first)
    assert isinstance(store.take_lease(LOCATION, "build-b", NOW, MINUTES_10), LeaseTaken)


def test_an_expired_order_lease_is_taken_over_and_its_old_holder_cannot_release_it(
    store: Datastore,
) -> None:
    dead = store.take_lease(LOCATION, "build-a", NOW, MINUTES_10)
    assert isinstance(dead, LeaseTaken)
    later = NOW + MINUTES_10
    taken = store.take_lease(LOCATION, "build-b", later, MINUTES_10)
    assert isinstance(taken, LeaseTaken) and taken.lease.holder == "build-b"
    store.release_lease(LOCATION, dead)  # too late: a no-op, build-b keeps it
    held = store.take_lease(LOCATION, "build-c", later, MINUTES_10)
    assert isinstance(held, LeaseHeld) and held.lease.holder == "build-b"


def test_a_lease_elsewhere_does_not_hold_this_location(store: Datastore) -> None:
    other = DatastoreLocation("certfleet-unit", "certfleet", "aws", "build-8", "www.example.com")
    assert isinstance(store.take_lease(LOCATION, "build-a", NOW, MINUTES_10), LeaseTaken)
    assert isinstance(store.take_lease(other, "build-b", NOW, MINUTES_10), LeaseTaken)


# -- pointer trust and key rotation: the same contract on both --------------------------------

KEY_A, KEY_B = MasterKey(os.urandom(32)), MasterKey(os.urandom(32))


def keyed(store: Datastore, s3: S3Client, keys: list[MasterKey]) -> Datastore:
    """The same datastore, read and written with `keys` (the current one first)."""
    if isinstance(store, InMemoryDatastore):
        store.master_keys = keys
        return store
    return S3Datastore(s3, keys, clock=lambda: NOW)


def stored_pointer(store: Datastore, s3: S3Client) -> bytes:
    if isinstance(store, InMemoryDatastore):
        data = store.pointer_bytes(LOCATION)
        assert data is not None
        return data
    return s3.get_object(Bucket=LOCATION.bucket, Key=LOCATION.pointer_key)["Body"].read()


def replace_pointer(store: Datastore, s3: S3Client, data: bytes) -> None:
    if isinstance(store, InMemoryDatastore):
        store.overwrite_pointer(LOCATION, data)
    else:
        s3.put_object(Bucket=LOCATION.bucket, Key=LOCATION.pointer_key, Body=data)


def test_a_publish_goes_above_the_highest_revision_the_caller_saw(store: Datastore) -> None:
    pointer = store.publish(
        LOCATION, CHAIN, KEY, "0a", NOW, NOW + timedelta(days=90), None, after_revision=41
    )
    assert pointer.revision == 42
    current = store.read_current(LOCATION)
    assert current is not None and current.pointer.revision == 42
    # Never below the pointer's own, whatever the caller says.
    assert publish(store, "0b", current.pointer_etag) == 43


def test_new_pointers_are_sealed_with_the_current_key_and_read_with_any(
    store: Datastore, moto_s3: S3Client
) -> None:
    store = keyed(store, moto_s3, [KEY_A])
    publish(store, "0a", None)
    rotated = keyed(store, moto_s3, [KEY_B, KEY_A])
    current = rotated.read_current(LOCATION)
    assert current is not None and current.pointer.key_id == KEY_A.key_id_hex
    assert not current.sealed_with_current_key
    assert (
        rotated.publish(LOCATION, CHAIN, KEY, "0a", NOW, NOW, current.pointer_etag).key_id
        == KEY_B.key_id_hex
    )
    again = rotated.read_current(LOCATION)
    assert again is not None and again.sealed_with_current_key


def test_a_pointer_under_a_retired_key_is_an_unknown_key_the_operator_may_replace(
    store: Datastore, moto_s3: S3Client
) -> None:
    publish(keyed(store, moto_s3, [KEY_A]), "0a", None)
    retired = keyed(store, moto_s3, [KEY_B])
    with pytest.raises(UnknownMasterKeyError) as caught:
        retired.read_current(LOCATION)
    assert caught.value.pointer_etag is not None
    with pytest.raises(UnknownMasterKeyError):
        retired.poll_pointer(LOCATION, None)
    assert publish(retired, "0b", caught.value.pointer_etag) == 2


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda doc: doc.pop("mac"), UnauthenticatedPointerError),
        (lambda doc: doc.update(revision=9), PointerMacError),
    ],
    ids=["tag stripped", "field changed"],
)
def test_a_tampered_pointer_fails_alike_on_both(
    store: Datastore,
    moto_s3: S3Client,
    change: Callable[[dict[str, object]], object],
    error: type[Exception],
) -> None:
    publish(store, "0a", None)
    document = json.loads(stored_pointer(store, moto_s3))
    change(document)
    replace_pointer(store, moto_s3, json.dumps(document).encode())
    with pytest.raises(error):
        store.read_current(LOCATION)
    with pytest.raises(error):
        store.poll_pointer(LOCATION, None)


# -- the location's claim (owner.json) ------------------------------------------------------

SHOP = LocationOwner.resource("cluster-1", "shop", "www", "uid-1")
OTHER = LocationOwner.resource("cluster-1", "other", "www", "uid-2")


def test_nobody_claimed_a_fresh_location(store: Datastore) -> None:
    assert store.read_claim(LOCATION) is None


def test_of_two_claimants_exactly_one_owns_the_location(store: Datastore) -> None:
    won = store.claim(LOCATION, SHOP, NOW, None)
    with pytest.raises(DatastoreConflictError):
        store.claim(LOCATION, OTHER, NOW, None)  # saw no claim either: too late
    read = store.read_claim(LOCATION)
    assert read is not None and read.owner == SHOP and read.etag == won.etag


def test_a_claim_is_taken_over_only_against_the_etag_read(store: Datastore) -> None:
    first = store.claim(LOCATION, SHOP, NOW, None)
    machines = LocationOwner.build_machines("prod")
    taken = store.claim(LOCATION, OTHER, NOW, first.etag)
    with pytest.raises(DatastoreConflictError):
        store.claim(LOCATION, machines, NOW, first.etag)  # judged on the old claim
    read = store.read_claim(LOCATION)
    assert read is not None and read.owner == OTHER and read.etag == taken.etag


def test_a_claim_elsewhere_does_not_claim_this_location(store: Datastore) -> None:
    other = DatastoreLocation("certfleet-unit", "certfleet", "aws", "build-8", "www.example.com")
    store.claim(other, OTHER, NOW, None)
    assert store.read_claim(LOCATION) is None


def test_the_pointer_names_the_owner_that_published(store: Datastore) -> None:
    store.publish(
        LOCATION, CHAIN, KEY, "0a", NOW, NOW + timedelta(days=90), None, owner=SHOP.identity()
    )
    stored = store.read_current(LOCATION)
    assert stored is not None and stored.pointer.owner == SHOP.identity()
