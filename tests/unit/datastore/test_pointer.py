"""The current.json pointer: serialisation, authentication, strict parsing, and a parser that
never crashes."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from certfleet.datastore import DatastoreIntegrityError, Pointer
from certfleet.datastore import parse_pointer as parse_with
from certfleet.datastore.encryption import KeyRing, MasterKey
from certfleet.datastore.errors import (
    PointerLocationError,
    PointerMacError,
    UnauthenticatedPointerError,
    UnknownMasterKeyError,
)
from certfleet.datastore.location import DatastoreLocation
from certfleet.datastore.pointer import MAX_POINTER_BYTES, canonical, pointer_mac

KEY = MasterKey(bytes(range(32)))
OTHER_KEY = MasterKey(bytes(range(1, 33)))
RING = KeyRing([KEY])
LOCATION = DatastoreLocation("bucket-1", "certfleet", "aws", "build-7", "www.example.com")


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def parse_pointer(data: bytes, keys: KeyRing = RING) -> Pointer:
    return parse_with(data, LOCATION, keys)


POINTER = Pointer(
    revision=3,
    serial="04a1b2c3d4",
    not_before=datetime(2026, 1, 1, tzinfo=UTC),
    not_after=datetime(2026, 4, 1, tzinfo=UTC),
    fullchain_sha256=digest("fullchain"),
    privkey_sha256=digest("privkey"),
    privkey_enc_sha256=digest("privkey.enc"),
    published_at=datetime(2026, 1, 1, 0, 5, tzinfo=UTC),
    key_id=KEY.key_id_hex,
)


def document(**changes: Any) -> dict[str, Any]:
    """The pointer's document with `changes`, signed again where it can be: what a holder of
    the master key could write (so these tests reach the field checks behind the tag)."""
    base: dict[str, Any] = json.loads(POINTER.to_json(LOCATION, KEY))
    base.update(changes)
    try:
        return signed(base)
    except ValueError:  # an infinity cannot be signed (no JSON); leave the old tag
        return base


def signed(doc: dict[str, Any], key: MasterKey = KEY) -> dict[str, Any]:
    doc = dict(doc)
    doc["mac"] = pointer_mac(key, doc)
    return doc


def encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def test_json_fields_and_round_trip() -> None:
    data = POINTER.to_json(LOCATION, KEY)
    found = json.loads(data)
    mac = found.pop("mac")
    assert found == {
        "format_version": 2,
        "revision": 3,
        "serial": "04a1b2c3d4",
        "not_before": "2026-01-01T00:00:00Z",
        "not_after": "2026-04-01T00:00:00Z",
        "fullchain_sha256": digest("fullchain"),
        "privkey_sha256": digest("privkey"),
        "privkey_enc_sha256": digest("privkey.enc"),
        "published_at": "2026-01-01T00:05:00Z",
        "key_id": KEY.key_id_hex,
        "location": {
            "cloudhost": "aws",
            "build_identifier": "build-7",
            "domain": "www.example.com",
        },
    }
    assert len(mac) == 64 and mac == pointer_mac(KEY, found)
    assert parse_pointer(data) == POINTER


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    assert parse_pointer(encode(document(ari_window="later"))) == POINTER


# -- authentication ------------------------------------------------------------------------


def test_the_canonical_form_is_the_sorted_compact_document_without_the_tag() -> None:
    doc = {"b": 1, "a": {"z": "é", "y": [1, 2]}, "mac": "ignored"}
    assert canonical(doc) == b'{"a":{"y":[1,2],"z":"\\u00e9"},"b":1}'
    assert canonical({"a": 1}) == canonical({"a": 1, "mac": "x" * 64})


def test_a_field_added_by_a_newer_writer_is_covered_by_the_tag() -> None:
    doc = document(ari_window={"start": "2026-03-01T00:00:00Z"})  # a field not known here
    assert parse_pointer(encode(doc)) == POINTER
    doc["ari_window"] = {"start": "2026-02-01T00:00:00Z"}  # changed after signing
    with pytest.raises(PointerMacError):
        parse_pointer(encode(doc))


@pytest.mark.parametrize("field", ["revision", "serial", "fullchain_sha256", "not_after"])
def test_a_changed_field_fails_the_tag(field: str) -> None:
    doc = json.loads(POINTER.to_json(LOCATION, KEY))
    doc[field] = {"revision": 4, "serial": "05", "fullchain_sha256": digest("x")}.get(
        field, "2027-01-01T00:00:00Z"
    )
    with pytest.raises(PointerMacError, match="failed authentication"):
        parse_pointer(encode(doc))


def test_a_version_1_pointer_is_unauthenticated() -> None:
    doc = json.loads(POINTER.to_json(LOCATION, KEY))
    for name in ("mac", "key_id", "location"):
        del doc[name]
    doc["format_version"] = 1
    with pytest.raises(UnauthenticatedPointerError, match="format_version 1"):
        parse_pointer(encode(doc))


def test_a_pointer_whose_tag_was_stripped_is_unauthenticated() -> None:
    doc = json.loads(POINTER.to_json(LOCATION, KEY))
    del doc["mac"]
    with pytest.raises(UnauthenticatedPointerError, match="no authentication tag"):
        parse_pointer(encode(doc))


@pytest.mark.parametrize("mac", ["0" * 64, "", "é" * 64, 7, None.__class__.__name__, ["a"]])
def test_a_forged_or_misshapen_tag_fails(mac: object) -> None:
    doc = json.loads(POINTER.to_json(LOCATION, KEY))
    doc["mac"] = mac
    with pytest.raises(PointerMacError):
        parse_pointer(encode(doc))


def test_a_pointer_of_another_location_names_where_it_came_from() -> None:
    elsewhere = DatastoreLocation("bucket-1", "certfleet", "aws", "build-8", "www.example.com")
    with pytest.raises(PointerLocationError, match=r"aws/build-8/www\.example\.com.*copied"):
        parse_pointer(POINTER.to_json(elsewhere, KEY))


def test_a_pointer_signed_with_the_location_removed_is_refused() -> None:
    doc = json.loads(POINTER.to_json(LOCATION, KEY))
    del doc["location"]
    with pytest.raises(PointerLocationError, match="no location"):
        parse_pointer(encode(signed(doc)))


def test_an_unknown_key_id_names_the_configured_ones() -> None:
    data = dataclasses.replace(POINTER, key_id=OTHER_KEY.key_id_hex).to_json(LOCATION, OTHER_KEY)
    with pytest.raises(UnknownMasterKeyError, match=KEY.key_id_hex):
        parse_pointer(data)


def test_a_key_ring_reads_pointers_of_every_key_it_holds() -> None:
    old = dataclasses.replace(POINTER, key_id=OTHER_KEY.key_id_hex)
    ring = KeyRing([KEY, OTHER_KEY])
    assert parse_pointer(old.to_json(LOCATION, OTHER_KEY), ring) == old
    assert parse_pointer(POINTER.to_json(LOCATION, KEY), ring) == POINTER


def test_a_tag_made_with_another_key_under_a_claimed_id_fails() -> None:
    doc = json.loads(POINTER.to_json(LOCATION, KEY))
    with pytest.raises(PointerMacError):
        parse_pointer(encode(signed(doc, OTHER_KEY)))  # claims KEY's id


def test_a_pointer_is_sealed_only_with_the_key_it_names() -> None:
    with pytest.raises(ValueError, match="names key"):
        POINTER.to_json(LOCATION, OTHER_KEY)


@pytest.mark.parametrize(
    "changes",
    [
        {"format_version": 3},
        {"format_version": 0},
        {"format_version": "1"},
        {"format_version": True},
        {"format_version": 1.0},
        {"revision": -1},
        {"revision": 0},
        {"revision": 1.5},
        {"revision": 3.0},
        {"revision": "3"},
        {"revision": True},
        {"revision": None},
        {"revision": 2**53},
        {"serial": ""},
        {"serial": "04:A1"},
        {"serial": "04A1"},
        {"serial": 1234},
        {"serial": "f" * 65},
        {"fullchain_sha256": digest("x").upper()},
        {"fullchain_sha256": digest("x")[:63]},
        {"privkey_sha256": None},
        {"privkey_enc_sha256": ["a"]},
        {"not_after": "2026-04-01T00:00:00+00:00"},
        {"not_after": "2026-04-01 00:00:00Z"},
        {"not_after": "2026-04-01T00:00:00.5Z"},
        {"not_after": "2026-13-01T00:00:00Z"},
        {"not_after": "2026-02-30T00:00:00Z"},
        {"not_after": 1767225600},
        {"not_after": "2025-12-01T00:00:00Z"},  # before not_before
        {"published_at": "yesterday"},
        {"key_id": "ABCDEF0123456789"},
        {"key_id": 7},
    ],
    ids=repr,
)
def test_invalid_values_are_rejected(changes: dict[str, Any]) -> None:
    with pytest.raises(DatastoreIntegrityError):
        parse_pointer(encode(document(**changes)))


@pytest.mark.parametrize(
    "field",
    [
        "format_version",
        "revision",
        "serial",
        "not_before",
        "not_after",
        "fullchain_sha256",
        "privkey_sha256",
        "privkey_enc_sha256",
        "published_at",
        "key_id",
    ],
)
def test_every_field_is_required(field: str) -> None:
    doc = document()
    del doc[field]
    with pytest.raises(DatastoreIntegrityError, match=field):
        parse_pointer(encode(signed(doc)))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"null",
        b"[]",
        b'"pointer"',
        b"{",
        b"\xff\xfe{}",
        b'{"revision": NaN}',
        b'{"revision": Infinity}',
        b"[" * 100_000,
        b"[" * 30_000 + b"]" * 30_000,
        b'{"revision": 1' + b"0" * 5000 + b"}",
    ],
    ids=lambda data: repr(data[:20]),
)
def test_malformed_documents_are_rejected(data: bytes) -> None:
    with pytest.raises(DatastoreIntegrityError):
        parse_pointer(data)


def test_duplicate_keys_are_rejected() -> None:
    data = POINTER.to_json(LOCATION, KEY).replace(b'"revision": 3', b'"revision": 3, "revision": 4')
    with pytest.raises(DatastoreIntegrityError, match="duplicate"):
        parse_pointer(data)


def test_oversize_pointer_is_rejected_before_parsing() -> None:
    padded = document(padding="x" * MAX_POINTER_BYTES)
    with pytest.raises(DatastoreIntegrityError, match="limit"):
        parse_pointer(encode(padded))


def test_error_message_is_bounded() -> None:
    with pytest.raises(DatastoreIntegrityError) as caught:
        parse_pointer(encode(document(serial="Z" * 50_000)))
    assert len(str(caught.value)) < 300


def test_constructor_validates_times() -> None:
    with pytest.raises(ValueError, match="aware"):
        dataclasses.replace(POINTER, not_after=datetime(2026, 4, 1))
    with pytest.raises(ValueError, match="UTC"):
        dataclasses.replace(
            POINTER, not_after=datetime(2026, 4, 1, tzinfo=timezone(timedelta(hours=2)))
        )
    with pytest.raises(ValueError, match="whole seconds"):
        dataclasses.replace(POINTER, not_after=datetime(2026, 4, 1, 0, 0, 0, 1, tzinfo=UTC))


# -- properties ------------------------------------------------------------------------


def only_pointer_or_integrity_error(data: bytes) -> None:
    try:
        result = parse_pointer(data)
    except DatastoreIntegrityError:
        return
    assert isinstance(result, Pointer)


@settings(max_examples=500)
@given(st.binary(max_size=2048))
def test_any_bytes_give_a_pointer_or_an_integrity_error(data: bytes) -> None:
    only_pointer_or_integrity_error(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=80),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)
FIELDS = list(json.loads(POINTER.to_json(LOCATION, KEY)))


@settings(max_examples=500)
@given(
    replacements=st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=3),
    removals=st.sets(st.sampled_from(FIELDS), max_size=2),
)
def test_mutated_pointers_give_a_pointer_or_an_integrity_error(
    replacements: dict[str, Any], removals: set[str]
) -> None:
    doc = document(**replacements)
    for name in removals:
        doc.pop(name, None)
    only_pointer_or_integrity_error(encode(doc))
    try:
        resigned = signed(doc)
    except ValueError:  # an infinity: no JSON, so no writer could sign it
        return
    only_pointer_or_integrity_error(encode(resigned))


timestamps = st.datetimes(
    min_value=datetime(1, 1, 1),
    max_value=datetime(9999, 12, 31, 23, 59, 59),
    timezones=st.just(UTC),
).map(lambda value: value.replace(microsecond=0))
hex_digests = st.binary(min_size=1).map(lambda data: hashlib.sha256(data).hexdigest())


@given(
    revision=st.integers(min_value=1, max_value=2**53 - 1),
    serial=st.from_regex(r"[0-9a-f]{1,64}", fullmatch=True),
    times=st.lists(timestamps, min_size=3, max_size=3),
    digests=st.lists(hex_digests, min_size=3, max_size=3),
)
def test_every_valid_pointer_round_trips(
    revision: int, serial: str, times: list[datetime], digests: list[str]
) -> None:
    not_before, not_after = sorted(times[:2])
    pointer = Pointer(
        revision=revision,
        serial=serial,
        not_before=not_before,
        not_after=not_after,
        fullchain_sha256=digests[0],
        privkey_sha256=digests[1],
        privkey_enc_sha256=digests[2],
        published_at=times[2],
        key_id=KEY.key_id_hex,
    )
    assert parse_pointer(pointer.to_json(LOCATION, KEY)) == pointer


def test_the_owner_is_named_when_known_and_optional_when_read() -> None:
    owned = dataclasses.replace(POINTER, owner="ManagedCertificate:c1/shop/www/uid-1")
    owner = json.loads(owned.to_json(LOCATION, KEY))["owner"]
    assert owner == "ManagedCertificate:c1/shop/www/uid-1"
    assert parse_pointer(owned.to_json(LOCATION, KEY)) == owned
    assert "owner" not in json.loads(POINTER.to_json(LOCATION, KEY))  # pointers from before owners
    assert parse_pointer(POINTER.to_json(LOCATION, KEY)).owner == ""


@pytest.mark.parametrize("owner", [7, "with space", "x" * 1025, "tab\there", "é"])
def test_a_bad_owner_is_an_integrity_error(owner: Any) -> None:
    with pytest.raises(DatastoreIntegrityError):
        parse_pointer(encode(document(owner=owner)))


def test_the_owner_is_covered_by_the_tag() -> None:
    owned = dataclasses.replace(POINTER, owner="ManagedCertificate:c1/shop/www/uid-1")
    doc = json.loads(owned.to_json(LOCATION, KEY))
    doc["owner"] = "ManagedCertificate:c1/other/www/uid-2"  # not signed again
    with pytest.raises(PointerMacError):
        parse_pointer(encode(doc))
