"""The `current.json` pointer: which revision agents install, and the digests to check it by.

Example (format version 2; keys sorted, times in UTC to the second):

    {
      "format_version": 2,
      "fullchain_sha256": "<64 hex>",
      "key_id": "<16 hex>",
      "location": {"build_identifier": "build-7", "cloudhost": "aws", "domain": "example.com"},
      "mac": "<64 hex>",
      "not_after": "2026-03-01T12:00:00Z",
      "not_before": "2025-12-01T12:00:00Z",
      "privkey_enc_sha256": "<64 hex>",
      "privkey_sha256": "<64 hex>",
      "published_at": "2025-12-01T12:00:05Z",
      "owner": "ManagedCertificate:<cluster>/shop/www/<uid>",
      "revision": 3,
      "serial": "04a1b2c3"
    }

``owner`` (optional: pointers written before owners existed have none) names the location's
owner that published the revision (``core.ownership``; the claim itself is ``owner.json``).

The pointer is read by every agent, possibly from a bucket others can write to, so parsing is
strict: size-bounded, UTF-8, no duplicate keys, no NaN, exact types.

Authentication (format version 2): `mac` is HMAC-SHA256 under a key derived from the master
key named by `key_id` (HKDF, info "certfleet/pointer-mac v2": never the key that wraps data
keys) over the canonical form of every other field: the document without `mac`, as JSON with
sorted keys, no whitespace, ASCII only. So a field added later (an owner) is covered without
a change here, and so is `location`, the (cloudhost, build, domain) it was written for: a
reader checks the tag, then that the location is its own, so a pointer copied from another
location fails with its own reason. The revision's files are bound to the pointer by their
digests, and the encrypted key to its S3 key by the envelope's associated data.

Versions: a reader refuses any version but 2. A version 1 pointer (no tag) is unauthenticated:
agents keep what they installed; the operator treats it as a broken pointer (it publishes
from its cache over it, conditionally on its ETag). Unknown keys are covered by the tag and
otherwise ignored, so a newer operator can add an optional field without stopping older
agents; a change older readers must not misread bumps `format_version`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from certfleet.core.clock import rfc3339
from certfleet.datastore.encryption import KEY_ID_BYTES, KeyRing, MasterKey
from certfleet.datastore.errors import (
    DatastoreIntegrityError,
    PointerLocationError,
    PointerMacError,
    UnauthenticatedPointerError,
    UnknownMasterKeyError,
)
from certfleet.datastore.location import DatastoreLocation, check_revision

FORMAT_VERSION = 2
# The last version without authentication: read as "unauthenticated", not as "unknown".
UNAUTHENTICATED_VERSION = 1
MAX_POINTER_BYTES = 64 * 1024
MAC_FIELD = "mac"
# HKDF info of the pointer's MAC key, and the MAC input's own label (domain separation).
MAC_KEY_PURPOSE = b"pointer-mac v2"
_MAC_LABEL = b"certfleet-pointer-v2\n"

_KEY_ID_HEX = re.compile(f"[0-9a-f]{{{2 * KEY_ID_BYTES}}}")

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# RFC 5280 caps serials at 20 octets; leave room for CAs that overstep it.
_SERIAL_HEX = re.compile(r"[0-9a-f]{1,64}")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
MAX_OWNER_LENGTH = 1024
_OWNER = re.compile(rf"[\x21-\x7e]{{1,{MAX_OWNER_LENGTH}}}")


def _check_utc(name: str, value: datetime) -> datetime:
    if not isinstance(value, datetime):
        raise ValueError(f"{name} must be a datetime")
    if value.tzinfo is None or value.utcoffset() != timedelta(0):
        raise ValueError(f"{name} must be an aware datetime in UTC")
    if value.microsecond:
        raise ValueError(f"{name} must be whole seconds (certificate times are)")
    return value.astimezone(UTC)


def _check_hex(name: str, value: str, pattern: re.Pattern[str], shape: str) -> None:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ValueError(f"{name} must be {shape}")


def _parse_timestamp(name: str, value: object) -> datetime:
    if not isinstance(value, str) or not _TIMESTAMP.fullmatch(value):
        raise ValueError(f"{name} must be a string YYYY-MM-DDTHH:MM:SSZ")
    return datetime.strptime(value, _TIMESTAMP_FORMAT).replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Pointer:
    """A validated pointer; constructing one with bad values raises ValueError."""

    revision: int
    serial: str
    not_before: datetime
    not_after: datetime
    fullchain_sha256: str
    privkey_sha256: str
    privkey_enc_sha256: str
    published_at: datetime
    # The master key (its id) whose derived key authenticates the pointer.
    key_id: str
    format_version: int = FORMAT_VERSION
    # The location's owner that published it (``core.ownership.LocationOwner.identity``);
    # empty in pointers written before owners existed.
    owner: str = ""

    def __post_init__(self) -> None:
        if self.format_version != FORMAT_VERSION or isinstance(self.format_version, bool):
            raise ValueError(f"format_version must be {FORMAT_VERSION}")
        check_revision(self.revision)
        _check_hex("key_id", self.key_id, _KEY_ID_HEX, f"{2 * KEY_ID_BYTES} lower-case hex digits")
        _check_hex("serial", self.serial, _SERIAL_HEX, "1 to 64 lower-case hex digits")
        for name in ("fullchain_sha256", "privkey_sha256", "privkey_enc_sha256"):
            _check_hex(name, getattr(self, name), _SHA256_HEX, "64 lower-case hex digits")
        for name in ("not_before", "not_after", "published_at"):
            object.__setattr__(self, name, _check_utc(name, getattr(self, name)))
        if self.not_before > self.not_after:
            raise ValueError("not_before must not be later than not_after")
        if not isinstance(self.owner, str) or (self.owner and not _OWNER.fullmatch(self.owner)):
            raise ValueError(f"owner must be up to {MAX_OWNER_LENGTH} printable ASCII characters")

    def document(self) -> dict[str, Any]:
        """The pointer's own fields as JSON values (not the location, not the tag)."""
        fields: dict[str, Any] = {
            "format_version": self.format_version,
            "revision": self.revision,
            "serial": self.serial,
            "not_before": rfc3339(self.not_before),
            "not_after": rfc3339(self.not_after),
            "fullchain_sha256": self.fullchain_sha256,
            "privkey_sha256": self.privkey_sha256,
            "privkey_enc_sha256": self.privkey_enc_sha256,
            "published_at": rfc3339(self.published_at),
            "key_id": self.key_id,
        }
        if self.owner:  # who published it (core.ownership); absent when nobody is named
            fields["owner"] = self.owner
        return fields

    def to_json(self, location: DatastoreLocation, key: MasterKey) -> bytes:
        """The authenticated document for `location`, sealed with `key` (its id is key_id)."""
        if key.key_id_hex != self.key_id:
            raise ValueError(f"the pointer names key {self.key_id}, not {key.key_id_hex}")
        document = {**self.document(), "location": location_field(location)}
        document[MAC_FIELD] = pointer_mac(key, document)
        return (json.dumps(document, sort_keys=True, indent=2) + "\n").encode("ascii")


def location_field(location: DatastoreLocation) -> dict[str, str]:
    """What a pointer is bound to: the location's identity, not where the bucket is."""
    return {
        "cloudhost": location.cloudhost,
        "build_identifier": location.build_identifier,
        "domain": location.domain,
    }


def canonical(document: dict[str, Any]) -> bytes:
    """The bytes the tag covers: every field but the tag itself, one way only."""
    unsigned = {name: value for name, value in document.items() if name != MAC_FIELD}
    text = json.dumps(
        unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )
    return text.encode("ascii")


def pointer_mac(key: MasterKey, document: dict[str, Any]) -> str:
    """HMAC-SHA256 of the canonical document under the pointer key derived from `key`."""
    mac_key = key.derive(MAC_KEY_PURPOSE)
    return hmac.new(mac_key, _MAC_LABEL + canonical(document), hashlib.sha256).hexdigest()


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise ValueError(f"duplicate key {key!r}")
        document[key] = value
    return document


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _field(document: dict[str, Any], name: str) -> Any:
    if name not in document:
        raise ValueError(f"missing field {name!r}")
    return document[name]


def _int_field(document: dict[str, Any], name: str) -> int:
    value = _field(document, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer")
    return value


def _str_field(document: dict[str, Any], name: str) -> str:
    value = _field(document, name)
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    return value


def _authenticate(document: dict[str, Any], location: DatastoreLocation, keys: KeyRing) -> None:
    """The tag, then the location; each failure its own PointerAuthenticationError (or
    UnknownMasterKeyError when the key id is not configured)."""
    version = _int_field(document, "format_version")
    if version == UNAUTHENTICATED_VERSION:
        raise UnauthenticatedPointerError(
            f"pointer has format_version {version}, which carries no authentication; "
            "certfleet follows only authenticated pointers (the operator replaces it)"
        )
    if version != FORMAT_VERSION:
        raise ValueError(
            f"format_version {version} is not {FORMAT_VERSION}, the one this certfleet reads"
        )
    mac = document.get(MAC_FIELD)
    if mac is None:
        raise UnauthenticatedPointerError("pointer has no authentication tag (mac)")
    key_id = _str_field(document, "key_id")
    if not _KEY_ID_HEX.fullmatch(key_id):
        raise ValueError(f"key_id must be {2 * KEY_ID_BYTES} lower-case hex digits")
    key = keys.find(key_id)
    if key is None:
        raise UnknownMasterKeyError(
            f"pointer is authenticated by master key id {key_id}; configured master key "
            f"ids: {keys.key_ids}"
        )
    # compare_digest wants ASCII: a tag of another shape fails like a wrong one.
    valid_shape = isinstance(mac, str) and _SHA256_HEX.fullmatch(mac) is not None
    if not valid_shape or not hmac.compare_digest(str(mac), pointer_mac(key, document)):
        raise PointerMacError(
            f"pointer failed authentication under master key id {key_id}: it was modified, "
            "or not written by a holder of the master key"
        )
    claimed = document.get("location")
    expected = location_field(location)
    if claimed != expected:
        where = (
            "/".join(str(claimed.get(name)) for name in ("cloudhost", "build_identifier", "domain"))
            if isinstance(claimed, dict)
            else "no location"
        )
        raise PointerLocationError(
            f"pointer was written for {where[:300]}, not for "
            f"{location.cloudhost}/{location.build_identifier}/{location.domain}: it was "
            "copied from another location"
        )


def parse_pointer(data: bytes, location: DatastoreLocation, keys: KeyRing) -> Pointer:
    """Parse, authenticate and validate `current.json` of `location`; anything else than an
    authentic, valid pointer of this location raises DatastoreIntegrityError (a
    PointerAuthenticationError or an UnknownMasterKeyError for a tag that does not hold;
    never another exception type)."""
    if len(data) > MAX_POINTER_BYTES:
        raise DatastoreIntegrityError(
            f"pointer is {len(data)} bytes, more than the limit of {MAX_POINTER_BYTES}"
        )
    try:
        text = data.decode("utf-8")
        document = json.loads(
            text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constants
        )
        if not isinstance(document, dict):
            raise ValueError("the document is not a JSON object")
        _authenticate(document, location, keys)
        return Pointer(
            format_version=_int_field(document, "format_version"),
            revision=_int_field(document, "revision"),
            serial=_str_field(document, "serial"),
            not_before=_parse_timestamp("not_before", _field(document, "not_before")),
            not_after=_parse_timestamp("not_after", _field(document, "not_after")),
            fullchain_sha256=_str_field(document, "fullchain_sha256"),
            privkey_sha256=_str_field(document, "privkey_sha256"),
            privkey_enc_sha256=_str_field(document, "privkey_enc_sha256"),
            published_at=_parse_timestamp("published_at", _field(document, "published_at")),
            key_id=_str_field(document, "key_id"),
            owner=_str_field(document, "owner") if "owner" in document else "",
        )
    # ValueError covers bad UTF-8, bad JSON, bad values and huge integer literals;
    # RecursionError covers deeply nested arrays that fit within the size limit.
    except (ValueError, RecursionError) as exc:
        # Bounded: the reason may quote bytes from the (possibly hostile) document.
        reason = str(exc)[:200]
        raise DatastoreIntegrityError(f"invalid pointer: {reason}") from None
