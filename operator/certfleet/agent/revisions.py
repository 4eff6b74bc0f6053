"""The highest revision this node has accepted for each location, kept beside the installed
files so it outlives the process (a cron `--once` remembers as the daemon does).

    <root>/.certfleet/<domain>/revisions.json    0600, written atomically

    {"format_version": 1, "highest": {"aws-eu/build-7/www.example.com": 12}}

Keyed by (cloudhost, build, domain), what the pointer's tag binds: the bucket may move, the
certificate's identity does not. Read and written under the installer's lock. A node that has
seen nothing yet takes the first authentic pointer as it is (trust on first use); to forget a
location on purpose (it was deleted and published again from 1), remove the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

from certfleet.agent.installer import InstallError
from certfleet.datastore.location import MAX_REVISION, DatastoreLocation

STATE_NAME = "revisions.json"
FORMAT_VERSION = 1
_MAX_STATE_BYTES = 64 * 1024
_MAX_LOCATIONS = 64


def location_key(location: DatastoreLocation) -> str:
    return f"{location.cloudhost}/{location.build_identifier}/{location.domain}"


class RevisionMemory:
    """The highest accepted revision per location, in one small file of the domain's store."""

    def __init__(self, store: Path) -> None:
        self.path = store / STATE_NAME

    def highest(self, location: DatastoreLocation) -> int:
        return self._read().get(location_key(location), 0)

    def remember(self, location: DatastoreLocation, revision: int) -> None:
        """Record `revision` if it is the highest yet (the caller holds the installer's lock)."""
        found = self._read()
        key = location_key(location)
        if found.get(key, 0) >= revision:
            return
        found[key] = revision
        if len(found) > _MAX_LOCATIONS:  # keep the highest-numbered ones: bounded
            found = dict(sorted(found.items(), key=lambda item: item[1])[-_MAX_LOCATIONS:])
        self._write(found)

    def _read(self) -> dict[str, int]:
        try:
            # Not through a symlink someone placed: the record is the agent's own file.
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as file:
                data = file.read(_MAX_STATE_BYTES + 1)
        except FileNotFoundError:
            return {}
        except OSError as error:
            raise InstallError(f"cannot read {self.path}: {error}") from None
        try:
            document: Any = json.loads(data) if len(data) <= _MAX_STATE_BYTES else None
        except ValueError:
            document = None
        highest = document.get("highest") if isinstance(document, dict) else None
        if (
            not isinstance(document, dict)
            or document.get("format_version") != FORMAT_VERSION
            or not isinstance(highest, dict)
            or not all(
                isinstance(key, str)
                and isinstance(value, int)
                and not isinstance(value, bool)
                and 0 <= value <= MAX_REVISION
                for key, value in highest.items()
            )
        ):
            # Never reset silently: that would undo the rollback protection.
            raise InstallError(
                f"{self.path} is not certfleet's revision record; remove it to start afresh"
            )
        return dict(highest)

    def _write(self, highest: dict[str, int]) -> None:
        document = {"format_version": FORMAT_VERSION, "highest": highest}
        data = (json.dumps(document, sort_keys=True) + "\n").encode()
        temporary = self.path.with_name(f".{STATE_NAME}.{secrets.token_hex(6)}.tmp")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(temporary, flags, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, self.path)
            directory = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as error:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise InstallError(f"cannot write {self.path}: {error}") from None
