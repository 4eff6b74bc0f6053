"""S3Datastore against moto's in-process S3.

moto 5 honours If-None-Match: * and If-Match on PutObject (412 PreconditionFailed; If-Match on
a missing key answers 404 NoSuchKey, as AWS does) and If-None-Match on GetObject (304), so the
conditional writes are tested here for real; test_s3_store_errors.py covers the answers
moto never gives (409 ConditionalRequestConflict, 5xx, connection failures) with Stubber.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from certfleet.datastore import (
    DatastoreConflictError,
    DatastoreIntegrityError,
    DatastoreLocation,
    DatastoreUnavailableError,
    DatastoreVerificationError,
    MasterKey,
    PollStatus,
    S3Datastore,
    UnknownMasterKeyError,
)
from certfleet.datastore.encryption import ENVELOPE_SCHEME, KeyRing
from certfleet.datastore.pointer import MAX_POINTER_BYTES, parse_pointer
from certfleet.datastore.s3_store import MAX_OBJECT_BYTES, MAX_REVISION_PROBES

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

FULLCHAIN = b"-----BEGIN CERTIFICATE-----\n" + os.urandom(600) + b"\n-----END CERTIFICATE-----\n"
PRIVKEY = b"-----BEGIN PRIVATE KEY-----\n" + os.urandom(300) + b"\n-----END PRIVATE KEY-----\n"
NOT_BEFORE = datetime(2026, 1, 15, 11, 0, tzinfo=UTC)
NOT_AFTER = datetime(2026, 4, 15, 11, 0, tzinfo=UTC)


BUCKET = "certfleet-test"
NOW = datetime(2026, 1, 15, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def s3_client(moto_s3: S3Client) -> S3Client:
    moto_s3.create_bucket(Bucket=BUCKET)
    return moto_s3


@pytest.fixture
def master_key() -> MasterKey:
    return MasterKey(os.urandom(32))


@pytest.fixture
def location() -> DatastoreLocation:
    return DatastoreLocation(
        bucket=BUCKET,
        prefix="certfleet/prod",
        cloudhost="aws-eu-1",
        build_identifier="build-42",
        domain="www.example.com",
    )


@pytest.fixture
def store(s3_client: S3Client, master_key: MasterKey) -> S3Datastore:
    return S3Datastore(s3_client, [master_key], clock=lambda: NOW)


def publish(
    store: S3Datastore,
    location: DatastoreLocation,
    etag: str | None,
    fullchain: bytes = FULLCHAIN,
    privkey: bytes = PRIVKEY,
    serial: str = "0abc",
) -> Any:
    return store.publish(location, fullchain, privkey, serial, NOT_BEFORE, NOT_AFTER, etag)


def body_of(client: S3Client, key: str) -> bytes:
    return client.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def exists(client: S3Client, key: str) -> bool:
    listing = client.list_objects_v2(Bucket=BUCKET, Prefix=key)
    return any(item["Key"] == key for item in listing.get("Contents", []))


def overwrite(client: S3Client, key: str, data: bytes) -> None:
    client.put_object(Bucket=BUCKET, Key=key, Body=data)


def flip_byte(data: bytes, index: int) -> bytes:
    tampered = bytearray(data)
    tampered[index] ^= 0x01
    return bytes(tampered)


class ClientProxy:
    """Passes calls to the moto client, except those a test replaces (fault injection)."""

    def __init__(self, client: S3Client) -> None:
        self.client = client
        self.calls: list[tuple[str, str]] = []
        self.hooks: dict[str, Callable[..., Any]] = {}

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)

        def call(**kwargs: Any) -> Any:
            self.calls.append((name, kwargs.get("Key", "")))
            hook = self.hooks.get(name)
            return hook(method, **kwargs) if hook else method(**kwargs)

        return call


@pytest.fixture
def proxy(s3_client: S3Client) -> ClientProxy:
    return ClientProxy(s3_client)


@pytest.fixture
def proxied_store(proxy: ClientProxy, master_key: MasterKey) -> S3Datastore:
    return S3Datastore(cast("S3Client", proxy), [master_key], clock=lambda: NOW)


# -- publish and read ------------------------------------------------------------------


def test_nothing_published_reads_as_none(store: S3Datastore, location: DatastoreLocation) -> None:
    assert store.read_current(location) is None


def test_round_trip(store: S3Datastore, location: DatastoreLocation) -> None:
    pointer = publish(store, location, None)
    stored = store.read_current(location)
    assert stored is not None
    assert stored.fullchain == FULLCHAIN
    assert stored.privkey == PRIVKEY
    assert stored.pointer == pointer
    assert stored.pointer_etag
    assert pointer.revision == 1
    assert pointer.serial == "0abc"
    assert (pointer.not_before, pointer.not_after) == (NOT_BEFORE, NOT_AFTER)
    assert pointer.published_at == NOW
    assert pointer.fullchain_sha256 == hashlib.sha256(FULLCHAIN).hexdigest()
    assert pointer.privkey_sha256 == hashlib.sha256(PRIVKEY).hexdigest()


def test_objects_as_stored(
    store: S3Datastore, s3_client: S3Client, location: DatastoreLocation, master_key: MasterKey
) -> None:
    pointer = publish(store, location, None)
    base = "certfleet/prod/aws-eu-1/build-42/www.example.com"
    listing = s3_client.list_objects_v2(Bucket=BUCKET)
    assert sorted(item["Key"] for item in listing["Contents"]) == [
        f"{base}/current.json",
        f"{base}/revisions/1/fullchain.pem",
        f"{base}/revisions/1/privkey.pem.enc",
    ]
    key_object = s3_client.get_object(Bucket=BUCKET, Key=f"{base}/revisions/1/privkey.pem.enc")
    blob = key_object["Body"].read()
    assert PRIVKEY not in blob
    assert PRIVKEY[28:60] not in blob
    assert hashlib.sha256(blob).hexdigest() == pointer.privkey_enc_sha256
    assert key_object["ContentType"] == "application/octet-stream"
    assert key_object["Metadata"] == {
        "certfleet-encryption": ENVELOPE_SCHEME,
        "certfleet-master-key-id": master_key.key_id_hex,
    }
    chain_object = s3_client.get_object(Bucket=BUCKET, Key=f"{base}/revisions/1/fullchain.pem")
    assert chain_object["ContentType"] == "application/pem-certificate-chain"
    assert chain_object["Body"].read() == FULLCHAIN
    pointer_object = s3_client.get_object(Bucket=BUCKET, Key=f"{base}/current.json")
    assert pointer_object["ContentType"] == "application/json"
    assert pointer_object["CacheControl"] == "no-cache"
    assert parse_pointer(pointer_object["Body"].read(), location, KeyRing([master_key])) == pointer


def test_revisions_count_up_and_old_ones_stay(
    store: S3Datastore, location: DatastoreLocation
) -> None:
    first = publish(store, location, None)
    stored = store.read_current(location)
    assert stored is not None
    renewed_chain, renewed_key = FULLCHAIN + b"renewed", PRIVKEY + b"renewed"
    second = publish(store, location, stored.pointer_etag, renewed_chain, renewed_key, "0abd")
    assert (first.revision, second.revision) == (1, 2)
    current = store.read_current(location)
    assert current is not None
    assert (current.pointer, current.fullchain, current.privkey) == (
        second,
        renewed_chain,
        renewed_key,
    )
    # The previous certificate is still there, and still verifies.
    previous = store.read_revision(location, first, "old")
    assert (previous.fullchain, previous.privkey) == (FULLCHAIN, PRIVKEY)
    third = publish(store, location, current.pointer_etag)
    assert third.revision == 3


def test_locations_are_independent(store: S3Datastore, location: DatastoreLocation) -> None:
    other = DatastoreLocation(BUCKET, "certfleet/prod", "aws-eu-1", "build-43", "www.example.com")
    publish(store, location, None)
    assert store.read_current(other) is None
    publish(store, other, None, FULLCHAIN + b"other")
    stored = store.read_current(other)
    assert stored is not None
    assert stored.pointer.revision == 1
    assert stored.fullchain == FULLCHAIN + b"other"


def test_pointer_is_written_last(
    proxied_store: S3Datastore, proxy: ClientProxy, location: DatastoreLocation
) -> None:
    publish(proxied_store, location, None)
    puts = [key for name, key in proxy.calls if name == "put_object"]
    gets_after_puts = [
        key
        for name, key in proxy.calls[proxy.calls.index(("put_object", puts[0])) :]
        if name == "get_object"
    ]
    assert puts == [
        location.fullchain_key(1),
        location.privkey_key(1),
        location.pointer_key,
    ]
    # Both revision objects were read back between their writes and the pointer's.
    assert gets_after_puts == [location.fullchain_key(1), location.privkey_key(1)]
    assert proxy.calls[-1] == ("put_object", location.pointer_key)


def test_repr_of_stored_certificate_hides_the_key(
    store: S3Datastore, location: DatastoreLocation
) -> None:
    publish(store, location, None)
    stored = store.read_current(location)
    assert stored is not None
    assert repr(PRIVKEY) not in repr(stored)
    assert "privkey=" not in repr(stored)


def test_logs_carry_no_key_material(
    store: S3Datastore, location: DatastoreLocation, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    publish(store, location, None)
    assert "revision 1" in caplog.text
    assert PRIVKEY.decode("latin-1") not in caplog.text


# -- verification failures never flip the pointer --------------------------------------


def tamper_on_read(key: str) -> Callable[..., Any]:
    def hook(method: Callable[..., Any], **kwargs: Any) -> Any:
        response = method(**kwargs)
        if kwargs["Key"] == key:
            data = response["Body"].read()

            class Body:
                def read(self, amt: int | None = None) -> bytes:
                    return flip_byte(data, 40)

                def close(self) -> None:
                    pass

            response["Body"] = Body()
        return response

    return hook


@pytest.mark.parametrize("which", ["fullchain", "privkey"])
def test_failed_read_back_is_a_verification_error_and_no_pointer(
    proxied_store: S3Datastore,
    proxy: ClientProxy,
    s3_client: S3Client,
    location: DatastoreLocation,
    which: str,
) -> None:
    key = location.fullchain_key(1) if which == "fullchain" else location.privkey_key(1)
    proxy.hooks["get_object"] = tamper_on_read(key)
    with pytest.raises(DatastoreVerificationError, match="pointer was not changed"):
        publish(proxied_store, location, None)
    assert not exists(s3_client, location.pointer_key)
    assert ("put_object", location.pointer_key) not in proxy.calls


def test_revision_vanishing_before_read_back_is_a_verification_error(
    proxied_store: S3Datastore, proxy: ClientProxy, s3_client: S3Client, location: DatastoreLocation
) -> None:
    def hook(method: Callable[..., Any], **kwargs: Any) -> Any:
        if kwargs["Key"] == location.privkey_key(1):
            s3_client.delete_object(Bucket=BUCKET, Key=kwargs["Key"])
        return method(**kwargs)

    proxy.hooks["get_object"] = hook
    with pytest.raises(DatastoreVerificationError):
        publish(proxied_store, location, None)
    assert not exists(s3_client, location.pointer_key)


def test_unreachable_read_back_is_unavailable_and_no_pointer(
    proxied_store: S3Datastore, proxy: ClientProxy, s3_client: S3Client, location: DatastoreLocation
) -> None:
    def hook(method: Callable[..., Any], **kwargs: Any) -> Any:
        if kwargs["Key"] == location.fullchain_key(1):
            raise EndpointConnectionError(endpoint_url="https://s3.invalid")
        return method(**kwargs)

    proxy.hooks["get_object"] = hook
    with pytest.raises(DatastoreUnavailableError):
        publish(proxied_store, location, None)
    assert not exists(s3_client, location.pointer_key)
    # The next attempt skips the orphaned revision and succeeds.
    proxy.hooks.clear()
    assert publish(proxied_store, location, None).revision == 2


# -- conditional writes ----------------------------------------------------------------


def test_stale_etag_is_a_conflict(store: S3Datastore, location: DatastoreLocation) -> None:
    publish(store, location, None)
    stored = store.read_current(location)
    assert stored is not None
    publish(store, location, stored.pointer_etag)
    with pytest.raises(DatastoreConflictError):
        publish(store, location, stored.pointer_etag)
    current = store.read_current(location)
    assert current is not None
    assert current.pointer.revision == 2


def test_no_etag_while_a_pointer_exists_is_a_conflict(
    store: S3Datastore, location: DatastoreLocation
) -> None:
    publish(store, location, None)
    with pytest.raises(DatastoreConflictError):
        publish(store, location, None)


def test_etag_of_a_removed_pointer_is_a_conflict(
    store: S3Datastore, s3_client: S3Client, location: DatastoreLocation
) -> None:
    publish(store, location, None)
    stored = store.read_current(location)
    assert stored is not None
    s3_client.delete_object(Bucket=BUCKET, Key=location.pointer_key)
    with pytest.raises(DatastoreConflictError):
        publish(store, location, stored.pointer_etag)


def competing_pointer_write(
    rival: S3Datastore, location: DatastoreLocation, rival_etag: Callable[[], str | None]
) -> Callable[..., Any]:
    """Let a rival writer flip the pointer just before ours is written (the race window)."""

    def hook(method: Callable[..., Any], **kwargs: Any) -> Any:
        if kwargs["Key"] == location.pointer_key:
            publish(rival, location, rival_etag(), FULLCHAIN + b"rival")
        return method(**kwargs)

    return hook


def test_race_on_first_pointer_if_none_match(
    proxied_store: S3Datastore, proxy: ClientProxy, store: S3Datastore, location: DatastoreLocation
) -> None:
    proxy.hooks["put_object"] = competing_pointer_write(store, location, lambda: None)
    with pytest.raises(DatastoreConflictError):
        publish(proxied_store, location, None)
    stored = store.read_current(location)
    assert stored is not None
    assert stored.fullchain == FULLCHAIN + b"rival"  # the rival's pointer was not clobbered
    assert stored.pointer.revision == 2  # the rival skipped our unfinished revision 1


def test_race_on_pointer_update_if_match(
    proxied_store: S3Datastore, proxy: ClientProxy, store: S3Datastore, location: DatastoreLocation
) -> None:
    publish(store, location, None)
    first = store.read_current(location)
    assert first is not None
    proxy.hooks["put_object"] = competing_pointer_write(store, location, lambda: first.pointer_etag)
    with pytest.raises(DatastoreConflictError):
        publish(proxied_store, location, first.pointer_etag)
    stored = store.read_current(location)
    assert stored is not None
    assert stored.fullchain == FULLCHAIN + b"rival"


def raise_on_put(key: str, error: Exception) -> Callable[..., Any]:
    def hook(method: Callable[..., Any], **kwargs: Any) -> Any:
        if kwargs["Key"] == key:
            raise error
        return method(**kwargs)

    return hook


def test_409_conditional_request_conflict_on_the_pointer_is_a_conflict(
    proxied_store: S3Datastore, proxy: ClientProxy, s3_client: S3Client, location: DatastoreLocation
) -> None:
    """AWS answers 409 while another conditional write to the key is in flight; moto never does."""
    response: Any = {
        "Error": {"Code": "ConditionalRequestConflict", "Message": "in flight"},
        "ResponseMetadata": {"HTTPStatusCode": 409},
    }
    error = ClientError(response, "PutObject")
    proxy.hooks["put_object"] = raise_on_put(location.pointer_key, error)
    with pytest.raises(DatastoreConflictError):
        publish(proxied_store, location, None)
    assert not exists(s3_client, location.pointer_key)


@pytest.mark.parametrize("which", ["fullchain", "privkey", "pointer"])
def test_unreachable_on_write_is_unavailable(
    proxied_store: S3Datastore,
    proxy: ClientProxy,
    s3_client: S3Client,
    location: DatastoreLocation,
    which: str,
) -> None:
    key = {
        "fullchain": location.fullchain_key(1),
        "privkey": location.privkey_key(1),
        "pointer": location.pointer_key,
    }[which]
    proxy.hooks["put_object"] = raise_on_put(
        key, EndpointConnectionError(endpoint_url="https://s3.invalid")
    )
    with pytest.raises(DatastoreUnavailableError, match=r"s3\.invalid"):
        publish(proxied_store, location, None)
    assert not exists(s3_client, location.pointer_key)


def test_existing_revision_is_never_overwritten(
    store: S3Datastore, s3_client: S3Client, location: DatastoreLocation
) -> None:
    # Left behind by a publish that died between its revision and its pointer.
    overwrite(s3_client, location.fullchain_key(1), b"orphan")
    pointer = publish(store, location, None)
    assert pointer.revision == 2
    assert body_of(s3_client, location.fullchain_key(1)) == b"orphan"
    assert not exists(s3_client, location.privkey_key(1))


def test_many_unfinished_revisions_are_skipped_after_a_listing(
    store: S3Datastore, s3_client: S3Client, location: DatastoreLocation
) -> None:
    """More leftovers than the probes: publishing used to stop for good; now it lists the
    revisions once and writes after the highest, overwriting none of them."""
    for revision in range(1, 2 * MAX_REVISION_PROBES + 1):
        overwrite(s3_client, location.fullchain_key(revision), b"orphan")
    pointer = publish(store, location, None)
    assert pointer.revision == 2 * MAX_REVISION_PROBES + 1
    assert body_of(s3_client, location.fullchain_key(MAX_REVISION_PROBES)) == b"orphan"


def test_existing_key_object_of_a_new_revision_is_a_conflict(
    store: S3Datastore, s3_client: S3Client, location: DatastoreLocation
) -> None:
    overwrite(s3_client, location.privkey_key(1), b"someone else's")
    with pytest.raises(DatastoreConflictError):
        publish(store, location, None)
    assert body_of(s3_client, location.privkey_key(1)) == b"someone else's"
    assert not exists(s3_client, location.pointer_key)


# -- polling ---------------------------------------------------------------------------


def test_poll_pointer(store: S3Datastore, location: DatastoreLocation) -> None:
    assert store.poll_pointer(location, None).status is PollStatus.MISSING
    assert store.poll_pointer(location, '"some-etag"').status is PollStatus.MISSING

    first = publish(store, location, None)
    poll = store.poll_pointer(location, None)
    assert poll.status is PollStatus.CHANGED and poll.changed
    assert poll.pointer == first
    assert poll.etag

    unchanged = store.poll_pointer(location, poll.etag)
    assert unchanged.status is PollStatus.UNCHANGED and not unchanged.changed
    assert unchanged.pointer is None
    assert unchanged.etag == poll.etag

    second = publish(store, location, poll.etag, FULLCHAIN + b"2")
    changed = store.poll_pointer(location, poll.etag)
    assert changed.status is PollStatus.CHANGED
    assert changed.pointer == second
    assert changed.etag != poll.etag
    assert changed.etag is not None and changed.pointer is not None
    stored = store.read_revision(location, changed.pointer, changed.etag)
    assert stored.fullchain == FULLCHAIN + b"2"


def test_poll_sends_the_conditional_header(
    proxied_store: S3Datastore, proxy: ClientProxy, location: DatastoreLocation
) -> None:
    seen: list[dict[str, Any]] = []

    def hook(method: Callable[..., Any], **kwargs: Any) -> Any:
        seen.append(kwargs)
        return method(**kwargs)

    publish(proxied_store, location, None)
    proxy.hooks["get_object"] = hook
    proxied_store.poll_pointer(location, '"abc"')
    assert seen[-1]["IfNoneMatch"] == '"abc"'


def test_poll_of_a_corrupt_pointer_is_an_integrity_error(
    store: S3Datastore, s3_client: S3Client, location: DatastoreLocation
) -> None:
    overwrite(s3_client, location.pointer_key, b"{not json")
    with pytest.raises(DatastoreIntegrityError):
        store.poll_pointer(location, None)


# -- tampering -------------------------------------------------------------------------


def test_flipped_byte_in_fullchain(
    store: S3Datastore, s3_client: S3Client, location: DatastoreLocation
) -> None:
    publish(store, location, None)
    key = location.fullchain_key(1)
    overwrite(s3_client, key, flip_byte(body_of(s3_client, key), 100))
    with pytest.raises(DatastoreIntegrityError, match=r"fullchain\.pem"):
        store.read_current(location)


@pytest.mark.parametrize("index", [0, 10, 60, -1])
def test_flipped_byte_in_encrypted_key(
    store: S3Datastore, s3_client: S3Client, location: DatastoreLocation, index: int
) -> None:
    publish(store, location, None)
    key = location.privkey_key(1)
    overwrite(s3_client, key, flip_byte(body_of(s3_client, key), index))
    with pytest.raises(DatastoreIntegrityError, match=r"privkey\.pem\.enc"):
        store.read_current(location)


def test_flipped_byte_in_encrypted_key_with_a_rewritten_pointer(
    store: S3Datastore, s3_client: S3Client, location: DatastoreLocation, master_key: MasterKey
) -> None:
    """Someone able to rewrite and sign the pointer too still cannot get a changed key
    accepted."""
    pointer = publish(store, location, None)
    key = location.privkey_key(1)
    tampered = flip_byte(body_of(s3_client, key), -5)
    overwrite(s3_client, key, tampered)
    forged = dataclasses.replace(pointer, privkey_enc_sha256=hashlib.sha256(tampered).hexdigest())
    overwrite(s3_client, location.pointer_key, forged.to_json(location, master_key))
    with pytest.raises(DatastoreIntegrityError, match="failed authentication"):
        store.read_current(location)


def test_key_object_swapped_in_from_another_location(
    store: S3Datastore, s3_client: S3Client, location: DatastoreLocation, master_key: MasterKey
) -> None:
    other = DatastoreLocation(BUCKET, "certfleet/prod", "aws-eu-1", "build-42", "evil.example.com")
    publish(store, location, None)
    other_pointer = publish(store, other, None, FULLCHAIN, PRIVKEY + b"evil")
    foreign_blob = body_of(s3_client, other.privkey_key(1))
    overwrite(s3_client, location.privkey_key(1), foreign_blob)
    with pytest.raises(DatastoreIntegrityError):
        store.read_current(location)
    # Even with the pointer's digests copied and signed for here by a key holder, the blob
    # is bound to its own S3 key.
    overwrite(s3_client, location.pointer_key, other_pointer.to_json(location, master_key))
    overwrite(s3_client, location.fullchain_key(1), FULLCHAIN)
    with pytest.raises(DatastoreIntegrityError, match="copied from another location"):
        store.read_current(location)


def test_tampered_pointer_digest(
    store: S3Datastore, s3_client: S3Client, location: DatastoreLocation
) -> None:
    publish(store, location, None)
    data = body_of(s3_client, location.pointer_key)
    digest = hashlib.sha256(FULLCHAIN).hexdigest().encode()
    overwrite(s3_client, location.pointer_key, data.replace(digest, b"0" * 64))
    with pytest.raises(DatastoreIntegrityError):
        store.read_current(location)


def test_pointer_to_a_missing_revision(
    store: S3Datastore, s3_client: S3Client, location: DatastoreLocation
) -> None:
    publish(store, location, None)
    s3_client.delete_object(Bucket=BUCKET, Key=location.privkey_key(1))
    with pytest.raises(DatastoreIntegrityError, match="missing"):
        store.read_current(location)


def test_a_corrupt_pointer_is_replaced_after_the_highest_revision(
    store: S3Datastore, s3_client: S3Client, location: DatastoreLocation
) -> None:
    """A broken pointer used to block publishing until a person fixed it; now the reader
    learns its ETag, and a publish replaces exactly it, after every revision that exists."""
    publish(store, location, None)
    publish(store, location, store.read_current(location).pointer_etag)  # type: ignore[union-attr]
    overwrite(s3_client, location.pointer_key, b"garbage")
    with pytest.raises(DatastoreIntegrityError) as broken:
        store.read_current(location)
    etag = s3_client.head_object(Bucket=BUCKET, Key=location.pointer_key)["ETag"]
    assert broken.value.pointer_etag == etag
    pointer = publish(store, location, etag)
    assert pointer.revision == 3
    assert store.read_current(location) is not None
    with pytest.raises(DatastoreConflictError):
        publish(store, location, etag)  # the broken pointer's ETag is spent


# -- size limits -----------------------------------------------------------------------


def test_oversize_revision_object_is_rejected(
    store: S3Datastore, s3_client: S3Client, location: DatastoreLocation
) -> None:
    publish(store, location, None)
    overwrite(s3_client, location.fullchain_key(1), b"x" * (MAX_OBJECT_BYTES + 1))
    with pytest.raises(DatastoreIntegrityError, match="limit"):
        store.read_current(location)


def test_oversize_pointer_is_rejected(
    store: S3Datastore, s3_client: S3Client, location: DatastoreLocation
) -> None:
    overwrite(s3_client, location.pointer_key, b" " * (MAX_POINTER_BYTES + 1))
    with pytest.raises(DatastoreIntegrityError, match="limit"):
        store.read_current(location)
    with pytest.raises(DatastoreIntegrityError, match="limit"):
        store.poll_pointer(location, None)


def test_reads_are_bounded_even_without_a_content_length(
    proxied_store: S3Datastore, proxy: ClientProxy, s3_client: S3Client, location: DatastoreLocation
) -> None:
    publish(proxied_store, location, None)
    overwrite(s3_client, location.fullchain_key(1), b"x" * (3 * MAX_OBJECT_BYTES))
    requested: list[int | None] = []

    def hook(method: Callable[..., Any], **kwargs: Any) -> Any:
        response = method(**kwargs)
        response.pop("ContentLength", None)
        real_body = response["Body"]

        class Body:
            def read(self, amt: int | None = None) -> bytes:
                requested.append(amt)
                return cast(bytes, real_body.read(amt))

            def close(self) -> None:
                real_body.close()

        response["Body"] = Body()
        return response

    proxy.hooks["get_object"] = hook
    with pytest.raises(DatastoreIntegrityError, match="limit"):
        proxied_store.read_current(location)
    assert None not in requested
    assert max(amt for amt in requested if amt is not None) <= MAX_OBJECT_BYTES + 1


def test_publish_refuses_what_agents_would_refuse(
    store: S3Datastore, s3_client: S3Client, location: DatastoreLocation
) -> None:
    with pytest.raises(ValueError):
        publish(store, location, None, fullchain=b"")
    with pytest.raises(ValueError):
        publish(store, location, None, privkey=b"")
    with pytest.raises(ValueError):
        publish(store, location, None, fullchain=b"x" * (MAX_OBJECT_BYTES + 1))
    with pytest.raises(ValueError):
        publish(store, location, None, privkey=b"x" * MAX_OBJECT_BYTES)
    with pytest.raises(ValueError, match="serial"):
        publish(store, location, None, serial="0A:BC")
    with pytest.raises(ValueError, match="not_after"):
        store.publish(location, FULLCHAIN, PRIVKEY, "0abc", NOT_AFTER, NOT_BEFORE, None)
    assert "Contents" not in s3_client.list_objects_v2(Bucket=BUCKET)


# -- master keys -----------------------------------------------------------------------


def test_key_rotation(s3_client: S3Client, location: DatastoreLocation) -> None:
    old, new = MasterKey(os.urandom(32)), MasterKey(os.urandom(32))
    first = publish(S3Datastore(s3_client, [old]), location, None)
    # Rotation step 1: the new key in front, the old one kept for reading.
    rotated = S3Datastore(s3_client, [new, old])
    stored = rotated.read_current(location)
    assert stored is not None and stored.privkey == PRIVKEY
    second = publish(rotated, location, stored.pointer_etag, privkey=PRIVKEY + b"2")
    metadata = s3_client.head_object(Bucket=BUCKET, Key=location.privkey_key(second.revision))
    assert metadata["Metadata"]["certfleet-master-key-id"] == new.key_id_hex
    # Step 2: once the current revision is under the new key, the old key can go.
    only_new = S3Datastore(s3_client, [new])
    latest = only_new.read_current(location)
    assert latest is not None and latest.privkey == PRIVKEY + b"2"
    with pytest.raises(UnknownMasterKeyError, match=old.key_id_hex):
        only_new.read_revision(location, first, "etag")


def test_reading_with_the_wrong_master_key(
    store: S3Datastore, s3_client: S3Client, location: DatastoreLocation
) -> None:
    publish(store, location, None)
    stranger = S3Datastore(s3_client, [MasterKey(os.urandom(32))])
    with pytest.raises(UnknownMasterKeyError):
        stranger.read_current(location)


def test_a_master_key_is_required(s3_client: S3Client) -> None:
    with pytest.raises(ValueError):
        S3Datastore(s3_client, [])


def test_old_revisions_are_pruned_beyond_the_limit_and_the_current_stays(
    s3_client: S3Client, location: DatastoreLocation
) -> None:
    store = S3Datastore(s3_client, [MasterKey(os.urandom(32))])  # the real clock: S3's times
    etag = None
    for serial in ("0a", "0b", "0c", "0d"):
        publish(store, location, etag, serial=serial)
        current = store.read_current(location)
        assert current is not None
        etag = current.pointer_etag
    overwrite(s3_client, location.fullchain_key(9), b"another writer, in flight")

    assert store.prune(location, current=4, keep=1, grace=timedelta(hours=1)) == []  # too new
    assert store.prune(location, current=4, keep=1, grace=timedelta(0)) == [1, 2]
    for gone in (1, 2):
        assert not exists(s3_client, location.fullchain_key(gone))
        assert not exists(s3_client, location.privkey_key(gone))
    assert exists(s3_client, location.fullchain_key(3))
    assert exists(s3_client, location.fullchain_key(9))
    assert store.read_current(location) is not None


# -- what a publish costs ----------------------------------------------------------------


@pytest.fixture
def s3_requests(s3_client: S3Client) -> list[tuple[str, str]]:
    """Every S3 request the client sends from now on: (operation, key or prefix)."""
    sent: list[tuple[str, str]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        sent.append((model.name, params.get("Key") or params.get("Prefix", "")))

    s3_client.meta.events.register("provide-client-params.s3.*", record)
    return sent


def test_a_first_publish_writes_reads_back_and_flips_nothing_more(
    store: S3Datastore, location: DatastoreLocation, s3_requests: list[tuple[str, str]]
) -> None:
    # The caller saw no pointer: If-None-Match on the pointer checks that, no GET first.
    publish(store, location, None)
    assert s3_requests == [
        ("PutObject", location.fullchain_key(1)),
        ("PutObject", location.privkey_key(1)),
        ("GetObject", location.fullchain_key(1)),
        ("GetObject", location.privkey_key(1)),
        ("PutObject", location.pointer_key),
    ]


def test_a_publish_on_the_pointer_the_caller_read_does_not_read_it_again(
    store: S3Datastore, location: DatastoreLocation, s3_requests: list[tuple[str, str]]
) -> None:
    publish(store, location, None)
    stored = store.read_current(location)
    assert stored is not None
    s3_requests.clear()
    pointer = store.publish(
        location,
        FULLCHAIN,
        PRIVKEY,
        "0b",
        NOT_BEFORE,
        NOT_AFTER,
        stored.pointer_etag,
        expected_revision=stored.pointer.revision,
    )
    assert pointer.revision == 2
    assert ("GetObject", location.pointer_key) not in s3_requests
    assert s3_requests[0] == ("PutObject", location.fullchain_key(2))
    assert len(s3_requests) == 5


def test_a_stale_pointer_and_its_revision_are_refused_at_the_pointer_write(
    store: S3Datastore, location: DatastoreLocation
) -> None:
    publish(store, location, None)
    stale = store.read_current(location)
    assert stale is not None
    publish(store, location, stale.pointer_etag, serial="0b")
    with pytest.raises(DatastoreConflictError):
        store.publish(
            location,
            FULLCHAIN + b"late",
            PRIVKEY,
            "0c",
            NOT_BEFORE,
            NOT_AFTER,
            stale.pointer_etag,
            expected_revision=stale.pointer.revision,
        )
    current = store.read_current(location)
    assert current is not None
    assert (current.pointer.revision, current.pointer.serial) == (2, "0b")


def test_a_pointer_the_caller_could_not_parse_is_read_again(
    store: S3Datastore, location: DatastoreLocation, s3_requests: list[tuple[str, str]]
) -> None:
    publish(store, location, None)
    stored = store.read_current(location)
    assert stored is not None
    s3_requests.clear()
    publish(store, location, stored.pointer_etag)  # no expected_revision: it is read
    assert s3_requests[0] == ("GetObject", location.pointer_key)


def test_prune_lists_nothing_while_every_revision_below_is_kept(
    store: S3Datastore, location: DatastoreLocation, s3_requests: list[tuple[str, str]]
) -> None:
    # At most `current` revisions (0 to current - 1) lie below the current one.
    assert store.prune(location, current=1, keep=1, grace=timedelta(0)) == []
    assert store.prune(location, current=10, keep=10, grace=timedelta(0)) == []
    assert s3_requests == []
    store.prune(location, current=11, keep=10, grace=timedelta(0))
    store.prune(location, current=1, keep=0, grace=timedelta(0))
    assert [operation for operation, _ in s3_requests] == ["ListObjectsV2", "ListObjectsV2"]
