"""Where one certificate lives in the datastore, and the S3 key scheme below it.

    s3://BUCKET/PREFIX/CLOUDHOST/BUILD_IDENTIFIER/DOMAIN/current.json
    s3://BUCKET/PREFIX/CLOUDHOST/BUILD_IDENTIFIER/DOMAIN/revisions/N/fullchain.pem
    s3://BUCKET/PREFIX/CLOUDHOST/BUILD_IDENTIFIER/DOMAIN/revisions/N/privkey.pem.enc

PREFIX may be empty (then keys start at CLOUDHOST) or several segments ("certfleet/prod").
The agent on every node derives the same keys from the same five values, so this module is
the single definition of the layout. Every component is validated here, even where the caller
validated it already: a component that could add or climb a path level would let one resource
read or overwrite another resource's certificate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

POINTER_NAME = "current.json"
REVISIONS_DIR = "revisions"
FULLCHAIN_NAME = "fullchain.pem"
PRIVKEY_NAME = "privkey.pem.enc"

# Revisions travel through JSON: stay within the integers every JSON reader holds exactly.
MAX_REVISION = 2**53 - 1

_COMPONENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
# S3 bucket naming rules (virtual-host style safe); legacy upper-case buckets are not supported.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# Lower-case only: DNS names are case-insensitive, and one domain must map to exactly one key.
_DOMAIN_LABEL = re.compile(r"[a-z0-9*_-]{1,63}")
_MAX_DOMAIN_LENGTH = 253
_MAX_PREFIX_LENGTH = 512


def _reject_path_tricks(what: str, value: str) -> None:
    """The checks that hold for every component, whatever its own grammar says."""
    if not value:
        raise ValueError(f"{what} must not be empty")
    if "\x00" in value:
        raise ValueError(f"{what} must not contain a NUL character")
    if "/" in value or "\\" in value:
        raise ValueError(f"{what} must not contain a path separator: {value!r}")
    if ".." in value:
        raise ValueError(f"{what} must not contain '..': {value!r}")
    if value.startswith("."):
        raise ValueError(f"{what} must not start with a dot: {value!r}")


def _check_component(what: str, value: str) -> None:
    _reject_path_tricks(what, value)
    if not _COMPONENT.fullmatch(value):
        raise ValueError(
            f"{what} must match [A-Za-z0-9][A-Za-z0-9._-]{{0,62}} (1 to 63 characters): {value!r}"
        )


def _check_prefix(value: str) -> None:
    if value == "":
        return
    if len(value) > _MAX_PREFIX_LENGTH:
        raise ValueError(f"prefix is longer than {_MAX_PREFIX_LENGTH} characters")
    if value.startswith("/") or value.endswith("/") or "//" in value:
        raise ValueError(
            f"prefix must be segments joined by single '/', no leading or trailing '/': {value!r}"
        )
    for segment in value.split("/"):
        _check_component("prefix segment", segment)


def _check_bucket(value: str) -> None:
    _reject_path_tricks("bucket", value)
    if not _BUCKET.fullmatch(value):
        raise ValueError(
            f"bucket must be 3 to 63 lower-case letters, digits, '.' or '-', "
            f"starting and ending with a letter or digit: {value!r}"
        )


def _check_domain(value: str) -> None:
    _reject_path_tricks("domain", value)
    if len(value) > _MAX_DOMAIN_LENGTH:
        raise ValueError(f"domain is longer than {_MAX_DOMAIN_LENGTH} characters")
    for label in value.split("."):
        if not _DOMAIN_LABEL.fullmatch(label):
            raise ValueError(
                "domain must be lower-case labels of letters, digits, '-', '_' or '*' "
                f"joined by single dots (IDNs as xn-- A-labels): {value!r}"
            )


def check_revision(revision: int) -> None:
    """Revisions count from 1; bool is an int subclass and is no revision."""
    if isinstance(revision, bool) or not isinstance(revision, int):
        raise ValueError(f"revision must be an int, not {type(revision).__name__}")
    if not 1 <= revision <= MAX_REVISION:
        raise ValueError(f"revision must be between 1 and {MAX_REVISION}: {revision}")


@dataclass(frozen=True, slots=True)
class DatastoreLocation:
    """One certificate's folder in the datastore: bucket, prefix and the resource's identity."""

    bucket: str
    prefix: str
    cloudhost: str
    build_identifier: str
    domain: str

    def __post_init__(self) -> None:
        for name in ("bucket", "prefix", "cloudhost", "build_identifier", "domain"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a str, not {type(value).__name__}")
        _check_bucket(self.bucket)
        _check_prefix(self.prefix)
        _check_component("cloudhost", self.cloudhost)
        _check_component("build identifier", self.build_identifier)
        _check_domain(self.domain)

    @property
    def base_key(self) -> str:
        """The folder's key inside the bucket, without a trailing slash."""
        parts = [self.cloudhost, self.build_identifier, self.domain]
        if self.prefix:
            parts.insert(0, self.prefix)
        return "/".join(parts)

    @property
    def pointer_key(self) -> str:
        return f"{self.base_key}/{POINTER_NAME}"

    def revision_prefix(self, revision: int) -> str:
        check_revision(revision)
        return f"{self.base_key}/{REVISIONS_DIR}/{revision}/"

    def fullchain_key(self, revision: int) -> str:
        return self.revision_prefix(revision) + FULLCHAIN_NAME

    def privkey_key(self, revision: int) -> str:
        return self.revision_prefix(revision) + PRIVKEY_NAME

    @property
    def s3_uri(self) -> str:
        """The folder as an s3:// URI, for status fields, events and logs."""
        return f"s3://{self.bucket}/{self.base_key}/"

    def s3_uri_of(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def __str__(self) -> str:
        return self.s3_uri
