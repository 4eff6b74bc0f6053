"""The `current.json` pointer: which revision agents install, and the digests to check it by.

Example (format version 1; keys sorted, times in UTC to the second):

    {
      "format_version": 1,
      "fullchain_sha256": "<64 hex>",
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
strict: size-bounded, UTF-8, no duplicate keys, no NaN, exact types. Unknown keys are ignored
so a newer operator can add an optional field without stopping older agents; a change older
readers must not misread bumps `format_version`, which they then refuse.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from certfleet.core.clock import rfc3339
from certfleet.datastore.errors import DatastoreIntegrityError
from certfleet.datastore.location import check_revision

FORMAT_VERSION = 1
MAX_POINTER_BYTES = 64 * 1024

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
    format_version: int = FORMAT_VERSION
    # The location's owner that published it (``core.ownership.LocationOwner.identity``);
    # empty in pointers written before owners existed.
    owner: str = ""

    def __post_init__(self) -> None:
        if self.format_version != FORMAT_VERSION or isinstance(self.format_version, bool):
            raise ValueError(f"format_version must be {FORMAT_VERSION}")
        check_revision(self.revision)
        _check_hex("serial", self.serial, _SERIAL_HEX, "1 to 64 lower-case hex digits")
        for name in ("fullchain_sha256", "privkey_sha256", "privkey_enc_sha256"):
            _check_hex(name, getattr(self, name), _SHA256_HEX, "64 lower-case hex digits")
        for name in ("not_before", "not_after", "published_at"):
            object.__setattr__(self, name, _check_utc(name, getattr(self, name)))
        if self.not_before > self.not_after:
            raise ValueError("not_before must not be later than not_after")
        if not isinstance(self.owner, str) or (self.owner and not _OWNER.fullmatch(self.owner)):
            raise ValueError(f"owner must be up to {MAX_OWNER_LENGTH} printable ASCII characters")

    def to_json(self) -> bytes:
        document = {
            "format_version": self.format_version,
            "revision": self.revision,
            "serial": self.serial,
            "not_before": rfc3339(self.not_before),
            "not_after": rfc3339(self.not_after),
            "fullchain_sha256": self.fullchain_sha256,
            "privkey_sha256": self.privkey_sha256,
            "privkey_enc_sha256": self.privkey_enc_sha256,
            "published_at": rfc3339(self.published_at),
        }
        if self.owner:
            document["owner"] = self.owner
        return (json.dumps(document, sort_keys=True, indent=2) + "\n").encode("ascii")


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


def parse_pointer(data: bytes) -> Pointer:
    """Parse and validate `current.json`; anything else than a valid pointer raises
    DatastoreIntegrityError (never another exception type)."""
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
        version = _int_field(document, "format_version")
        if version != FORMAT_VERSION:
            raise ValueError(
                f"format_version {version} is not {FORMAT_VERSION}, the one this certfleet reads"
            )
        return Pointer(
            format_version=version,
            revision=_int_field(document, "revision"),
            serial=_str_field(document, "serial"),
            not_before=_parse_timestamp("not_before", _field(document, "not_before")),
            not_after=_parse_timestamp("not_after", _field(document, "not_after")),
            fullchain_sha256=_str_field(document, "fullchain_sha256"),
            privkey_sha256=_str_field(document, "privkey_sha256"),
            privkey_enc_sha256=_str_field(document, "privkey_enc_sha256"),
            published_at=_parse_timestamp("published_at", _field(document, "published_at")),
            owner=_str_field(document, "owner") if "owner" in document else "",
        )
    # ValueError covers bad UTF-8, bad JSON, bad values and huge integer literals;
    # RecursionError covers deeply nested arrays that fit within the size limit.
    except (ValueError, RecursionError) as exc:
        # Bounded: the reason may quote bytes from the (possibly hostile) document.
        reason = str(exc)[:200]
        raise DatastoreIntegrityError(f"invalid pointer: {reason}") from None
