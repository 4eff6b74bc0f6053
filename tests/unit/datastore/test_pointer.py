"""The current.json pointer: serialisation, strict parsing, and a parser that never crashes."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from certfleet.datastore import DatastoreIntegrityError, Pointer, parse_pointer
from certfleet.datastore.pointer import MAX_POINTER_BYTES


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


POINTER = Pointer(
    revision=3,
    serial="04a1b2c3d4",
    not_before=datetime(2026, 1, 1, tzinfo=UTC),
    not_after=datetime(2026, 4, 1, tzinfo=UTC),
    fullchain_sha256=digest("fullchain"),
    privkey_sha256=digest("privkey"),
    privkey_enc_sha256=digest("privkey.enc"),
    published_at=datetime(2026, 1, 1, 0, 5, tzinfo=UTC),
)


def document(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = json.loads(POINTER.to_json())
    base.update(changes)
    return base


def encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def test_json_fields_and_round_trip() -> None:
    data = POINTER.to_json()
    assert json.loads(data) == {
        "format_version": 1,
        "revision": 3,
        "serial": "04a1b2c3d4",
        "not_before": "2026-01-01T00:00:00Z",
        "not_after": "2026-04-01T00:00:00Z",
        "fullchain_sha256": digest("fullchain"),
        "privkey_sha256": digest("privkey"),
        "privkey_enc_sha256": digest("privkey.enc"),
        "published_at": "2026-01-01T00:05:00Z",
    }
    assert parse_pointer(data) == POINTER


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    assert parse_pointer(encode(document(ari_window="later"))) == POINTER


@pytest.mark.parametrize(
    "changes",
    [
        {"format_version": 2},
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
    ],
)
def test_every_field_is_required(field: str) -> None:
    doc = document()
    del doc[field]
    with pytest.raises(DatastoreIntegrityError, match=field):
        parse_pointer(encode(doc))


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
    data = POINTER.to_json().replace(b'"revision": 3', b'"revision": 3, "revision": 4')
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
FIELDS = list(json.loads(POINTER.to_json()))


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
    )
    assert parse_pointer(pointer.to_json()) == pointer


def test_the_owner_is_named_when_known_and_optional_when_read() -> None:
    owned = dataclasses.replace(POINTER, owner="ManagedCertificate:c1/shop/www/uid-1")
    assert json.loads(owned.to_json())["owner"] == "ManagedCertificate:c1/shop/www/uid-1"
    assert parse_pointer(owned.to_json()) == owned
    assert "owner" not in json.loads(POINTER.to_json())  # pointers from before owners
    assert parse_pointer(POINTER.to_json()).owner == ""


@pytest.mark.parametrize("owner", [7, "with space", "x" * 1025, "tab\there", "é"])
def test_a_bad_owner_is_an_integrity_error(owner: Any) -> None:
    with pytest.raises(DatastoreIntegrityError):
        parse_pointer(encode(document(owner=owner)))
