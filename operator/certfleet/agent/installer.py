"""Atomic installation of `fullchain.pem` and `privkey.pem` under `<root>/<domain>/`.

Layout (the root is `${HOME}/ssl/live` by default):

    <root>/<domain>              -> .certfleet/<domain>/<version>    a relative symlink
    <root>/.certfleet/           0700 (FileModes.directory)
    <root>/.certfleet/<domain>/  0700: the versions, a lock file, and what stood there before
        <version>/               0700, named <UTC time>-<serial>-<random>
            fullchain.pem        0644
            privkey.pem          0600 (FileModes.key_file)
            combined.pem         0600: chain then key in one file, for haproxy (when asked)
            .certfleet-origin    0644: the datastore folder and revision it came from
        pre-certfleet-<time>/    a plain directory found at <root>/<domain>, moved aside as is

By default everything is the agent's own, and only it can enter the folders. A webserver whose
workers read the key as another user gets the files and folders in its group (FileModes: e.g.
group www-data, key 0640, folders 0750); the modes can open to the group, never to the world.

A version is written completely (each file fsynced) into a fresh folder, then the symlink is
switched with one rename(2): the webserver, which reads both paths when it reloads, finds the
old pair or the new pair, never a half-written file or a mix. The previous version stays for
rollback; older ones are pruned. The symlink is relative, so it resolves the same in a container
that mounts the root elsewhere (the agent's DaemonSet) as on the node itself (the webserver).

A wildcard domain `*.example.com` lives in `_wildcard.example.com`: `*` is awkward in shells and
configs, and `_` cannot start a host name, so the folder never collides with a real one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from certfleet.core.clock import utc_now
from certfleet.core.domains import WILDCARD_FOLDER_PREFIX, folder_name
from certfleet.core.errors import CertfleetError
from certfleet.core.pem import MAX_PEM_BYTES

STORE_DIR = ".certfleet"
FULLCHAIN_NAME = "fullchain.pem"
PRIVKEY_NAME = "privkey.pem"
COMBINED_NAME = "combined.pem"
MIGRATED_PREFIX = "pre-certfleet-"
WILDCARD_PREFIX = WILDCARD_FOLDER_PREFIX
LOCK_NAME = ".lock"
ORIGIN_NAME = ".certfleet-origin"  # hidden: never taken for a certificate file
_MAX_ORIGIN_BYTES = 4096
DEFAULT_KEEP_VERSIONS = 3
# A pre-certfleet folder may hold more than the pair (certbot's cert.pem, chain.pem, README);
# copied into the rollback version, so a config that names them keeps working after a rollback.
MAX_MIGRATED_FILES = 32

_VERSION = re.compile(r"\d{8}T\d{12}Z-[0-9a-z]{1,16}-[A-Za-z0-9_]{4,16}")
_LABEL_CHARACTERS = re.compile(r"[^0-9a-z]")


@dataclass(frozen=True, slots=True)
class FileModes:
    """Owner, group and modes of what the installer writes (None: the agent's own id)."""

    owner: int | None = None
    group: int | None = None
    key_file: int = 0o600  # privkey.pem and combined.pem
    directory: int = 0o700  # the folders under <root>/.certfleet

    def __post_init__(self) -> None:
        if self.key_file & ~0o660 or not self.key_file & 0o400:
            raise ValueError(
                f"a key file mode must let its owner read and give nothing to others or "
                f"execute bits: {self.key_file:04o} (e.g. 0600, 0640)"
            )
        if self.directory & ~0o775 or self.directory & 0o700 != 0o700:
            raise ValueError(
                f"a folder mode must give its owner rwx and the world no write: "
                f"{self.directory:04o} (e.g. 0700, 0750)"
            )
        for name, value in (("owner", self.owner), ("group", self.group)):
            if value is not None and not 0 <= value < 2**32 - 1:
                raise ValueError(f"the {name} id {value} is out of range")

    @property
    def chown(self) -> bool:
        return self.owner is not None or self.group is not None

    def apply(self, path: Path, mode: int) -> None:
        """Set `path`'s mode (exact, whatever the umask) and its owner and group."""
        os.chmod(path, mode)  # callers have refused a symlink here
        if self.chown:
            os.chown(
                path,
                -1 if self.owner is None else self.owner,
                -1 if self.group is None else self.group,
                follow_symlinks=False,
            )


DEFAULT_MODES = FileModes()


class InstallError(CertfleetError):
    """The certificate files could not be read or installed; the message names the path."""


def directory_name(domain: str) -> str:
    """The folder name of `domain` under the root; raises InvalidDomainError for a bad name."""
    return folder_name(domain)


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an installed version came from: the datastore folder (its s3:// URI) and the
    revision. Revisions, not the certificates' dates, order what a node installs."""

    location: str
    revision: int

    def to_json(self) -> bytes:
        return json.dumps({"location": self.location, "revision": self.revision}).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Origin | None:
        """None for anything unreadable: a version without a known origin orders nothing."""
        try:
            document = json.loads(data)
            location, revision = document["location"], document["revision"]
        except (ValueError, TypeError, KeyError):
            return None
        if not isinstance(location, str) or type(revision) is not int or revision < 1:
            return None
        return cls(location, revision)


@dataclass(frozen=True, slots=True)
class InstalledFiles:
    """What `<root>/<domain>/` holds now (empty bytes for a missing file)."""

    fullchain: bytes
    privkey: bytes = field(repr=False)
    version: str | None  # the certfleet version it resolves to; None: not managed (yet)
    origin: Origin | None = None  # None: installed before origins were recorded, or by hand


@dataclass(frozen=True, slots=True)
class Switch:
    """One switch of the symlink, enough to undo it."""

    current: str  # the version now installed
    previous_target: str | None  # the symlink's earlier target; None: there was nothing
    moved_aside: str | None = None  # a pre-certfleet directory's new name, when one was migrated


class CertificateInstaller:
    def __init__(
        self,
        root: Path,
        domain: str,
        *,
        keep_versions: int = DEFAULT_KEEP_VERSIONS,
        clock: Callable[[], datetime] = utc_now,
        modes: FileModes = DEFAULT_MODES,
        combined_pem: bool = False,
    ) -> None:
        if keep_versions < 2:
            raise ValueError("keep_versions must be at least 2: the current and the previous")
        self.root = root
        self.name = directory_name(domain)
        self.link = root / self.name
        self.store = root / STORE_DIR / self.name
        self._keep = keep_versions
        self._clock = clock
        self.modes = modes
        self._combined = combined_pem

    # -- reading ------------------------------------------------------------------------

    def read_installed(self) -> InstalledFiles | None:
        """The installed pair, both files from the folder the symlink names at one moment:
        read through the link twice, a switch in between paired one version's certificate
        with the next one's key. None when neither file is there."""
        try:
            target: str | None = os.readlink(self.link)
        except OSError:  # nothing there, or a plain folder (from before certfleet)
            target = None
        folder = self.link.parent / target if target is not None else self.link
        fullchain = _read_optional(folder / FULLCHAIN_NAME)
        privkey = _read_optional(folder / PRIVKEY_NAME)
        if not fullchain and not privkey:
            return None
        version = self._managed_version(target) if target is not None else None
        origin = None
        if version is not None:
            try:
                recorded = _read_optional(self.store / version / ORIGIN_NAME, _MAX_ORIGIN_BYTES)
            except InstallError:
                recorded = b""
            origin = Origin.from_json(recorded) if recorded else None
        return InstalledFiles(fullchain, privkey, version, origin)

    def current_version(self) -> str | None:
        try:
            target = os.readlink(self.link)
        except (FileNotFoundError, OSError):
            return None
        return self._managed_version(target)

    def versions(self) -> list[str]:
        """certfleet's versions of this domain, oldest first."""
        try:
            names = os.listdir(self.store)
        except FileNotFoundError:
            return []
        return sorted(name for name in names if _VERSION.fullmatch(name))

    # -- writing ------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Excludes other installers of this domain (the daemon and a cron `--once`)."""
        self._prepare()
        fd = os.open(self.store / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def install(
        self, fullchain: bytes, privkey: bytes, label: str, origin: Origin | None = None
    ) -> Switch:
        """Write a new version and switch the symlink to it. `label` (the serial) names it;
        `origin` is recorded beside the files."""
        if not fullchain or not privkey:
            raise ValueError("both files must be non-empty")
        self._prepare()
        previous, moved_aside = self._adopt_existing()
        files = {FULLCHAIN_NAME: fullchain, PRIVKEY_NAME: privkey}
        if self._combined:
            # haproxy's `crt`: the certificate, its chain and the key in one file.
            files[COMBINED_NAME] = fullchain.rstrip(b"\n") + b"\n" + privkey
        if origin is not None:
            files[ORIGIN_NAME] = origin.to_json()
        version = self._write_version(files, label)
        try:
            self._point_to(self._target(version))
        except OSError as error:
            shutil.rmtree(self.store / version, ignore_errors=True)
            if previous is None and moved_aside is not None:
                with contextlib.suppress(OSError):  # an empty folder from before: put it back
                    os.rename(self.store / moved_aside, self.link)
            raise InstallError(f"cannot switch {self.link} to the new version: {error}") from None
        return Switch(current=version, previous_target=previous, moved_aside=moved_aside)

    def rollback(self, switch: Switch) -> None:
        """Point the symlink back where it pointed before `switch`; drop the refused version."""
        try:
            if switch.previous_target is None and switch.moved_aside is not None:
                # An empty pre-certfleet folder had nothing to copy: put the folder itself back
                # (a directory cannot be renamed over the symlink, so the link goes first).
                current = os.readlink(self.link)
                self._point_to(None)
                try:
                    os.rename(self.store / switch.moved_aside, self.link)
                except OSError:
                    self._point_to(current)  # never leave the path missing
                    raise
            else:
                self._point_to(switch.previous_target)
        except OSError as error:
            raise InstallError(f"cannot restore {self.link}: {error}") from None
        shutil.rmtree(self.store / switch.current, ignore_errors=True)

    def prune(self) -> list[str]:
        """Delete all but the newest versions (always keeping the one the symlink names)."""
        current = self.current_version()
        versions = self.versions()
        keep = set(versions[-self._keep :])
        if current is not None:
            keep.add(current)
        removed = [name for name in versions if name not in keep]
        for name in removed:
            shutil.rmtree(self.store / name, ignore_errors=True)
        return removed

    # -- internals ----------------------------------------------------------------------

    def _prepare(self) -> None:
        try:
            if not self.root.exists():
                self.root.mkdir(mode=0o700, parents=True)
                # A root certfleet made is its own; one that was there stays as it is.
                self.modes.apply(self.root, self.modes.directory)
            for folder in (self.root / STORE_DIR, self.store):
                if folder.is_symlink():
                    # Writing keys through a symlink someone else placed could put them anywhere.
                    raise InstallError(f"{folder} is a symlink; certfleet expects a directory")
                folder.mkdir(mode=0o700, exist_ok=True)
                self.modes.apply(folder, self.modes.directory)
        except OSError as error:
            raise InstallError(f"cannot prepare {self.store}: {error}") from None

    def _target(self, version: str) -> str:
        return f"{STORE_DIR}/{self.name}/{version}"

    def _managed_version(self, target: str) -> str | None:
        prefix = f"{STORE_DIR}/{self.name}/"
        if not target.startswith(prefix):
            return None
        version = target[len(prefix) :]
        return version if _VERSION.fullmatch(version) else None

    def _adopt_existing(self) -> tuple[str | None, str | None]:
        """The current symlink target to roll back to, taking over what certfleet did not make.

        A foreign symlink or a plain directory (from before certfleet) is copied into a version
        of its own first, so a rollback restores exactly its files. A plain directory is then
        moved aside (kept, never deleted) and replaced by a symlink to that copy, made before
        the directory moves: a failure at any step (a full disk refusing the symlink) leaves
        the directory where it was. Between the two renames the path is briefly absent, which
        a webserver only notices if it reloads in that instant; the agent reloads afterwards.
        """
        try:
            info = os.lstat(self.link)
        except FileNotFoundError:
            return None, None
        except OSError as error:
            raise InstallError(f"cannot inspect {self.link}: {error}") from None
        if stat.S_ISLNK(info.st_mode):
            target = os.readlink(self.link)
            if self._managed_version(target) is not None:
                return target, None
            files = _read_folder(self.link)
            return (self._target(self._write_version(files, "migrated")) if files else None), None
        if not stat.S_ISDIR(info.st_mode):
            raise InstallError(f"{self.link} is neither a directory nor a symlink; remove it")
        files = _read_folder(self.link)
        migrated = self._write_version(files, "migrated") if files else None
        moved = f"{MIGRATED_PREFIX}{self._stamp()}"
        temporary = None
        try:
            if migrated is not None:
                temporary = self._new_link(self._target(migrated))
            os.rename(self.link, self.store / moved)
        except OSError as error:
            self._discard(temporary)
            raise InstallError(f"cannot move {self.link} aside: {error}") from None
        if temporary is not None:
            try:
                self._swap_in(temporary)
            except OSError as error:
                self._discard(temporary)
                with contextlib.suppress(OSError):
                    os.rename(self.store / moved, self.link)  # put the directory back
                raise InstallError(f"cannot replace {self.link} by a symlink: {error}") from None
        return (self._target(migrated) if migrated else None), moved

    def _stamp(self) -> str:
        return self._clock().astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")

    def _write_version(self, files: Mapping[str, bytes], label: str) -> str:
        clean = _LABEL_CHARACTERS.sub("", label.lower())[:16] or "x"
        try:
            folder = Path(tempfile.mkdtemp(prefix=f"{self._stamp()}-{clean}-", dir=self.store))
        except OSError as error:
            raise InstallError(f"cannot create a version under {self.store}: {error}") from None
        try:
            self.modes.apply(folder, self.modes.directory)
            for name, data in files.items():
                mode = 0o644 if name in (FULLCHAIN_NAME, ORIGIN_NAME) else self.modes.key_file
                _write_file(folder / name, data, mode, self.modes)
            _fsync_directory(folder)
            _fsync_directory(self.store)
        except OSError as error:
            shutil.rmtree(folder, ignore_errors=True)
            raise InstallError(f"cannot write {folder}: {error}") from None
        return folder.name

    def _point_to(self, target: str | None) -> None:
        """Switch the symlink in one rename(2) (or remove it, for target None). The new link
        is made beside it first: a failure at any step leaves the old one in place."""
        if target is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.link)
            _fsync_directory(self.root)
            return
        temporary = self._new_link(target)
        try:
            self._swap_in(temporary)
        except OSError:
            self._discard(temporary)
            raise

    def _new_link(self, target: str) -> Path:
        """A symlink to `target` under a temporary name beside `<root>/<domain>`."""
        temporary = self.root / f".{self.name}.{secrets.token_hex(6)}.tmp"
        os.symlink(target, temporary)
        return temporary

    def _swap_in(self, temporary: Path) -> None:
        os.replace(temporary, self.link)
        _fsync_directory(self.root)

    @staticmethod
    def _discard(temporary: Path | None) -> None:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)


def _read_optional(path: Path, limit: int = MAX_PEM_BYTES) -> bytes:
    try:
        with open(path, "rb") as file:
            data = file.read(limit + 1)
    except FileNotFoundError:
        return b""
    except OSError as error:
        raise InstallError(f"cannot read {path}: {error}") from None
    if len(data) > limit:
        raise InstallError(f"{path} is larger than {limit} bytes")
    return data


def _read_folder(folder: Path) -> dict[str, bytes]:
    """The regular files of a folder we are taking over (symlinks followed), by name."""
    found: dict[str, bytes] = {}
    try:
        entries = sorted(os.listdir(folder))
    except OSError as error:
        raise InstallError(f"cannot list {folder}: {error}") from None
    for name in entries:
        path = folder / name
        if name.startswith(".") or not path.is_file():
            continue
        if len(found) == MAX_MIGRATED_FILES:
            raise InstallError(f"{folder} holds more than {MAX_MIGRATED_FILES} files")
        found[name] = _read_optional(path)
    return found


def _write_file(path: Path, data: bytes, mode: int, modes: FileModes) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    # Created 0600 and only then given its group and mode: never readable by more than meant.
    fd = os.open(path, flags, 0o600)
    try:
        if modes.chown:
            os.fchown(
                fd,
                -1 if modes.owner is None else modes.owner,
                -1 if modes.group is None else modes.group,
            )
        os.fchmod(fd, mode)  # exact, whatever the umask
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(path: Path) -> None:
    """Make a rename or a new entry durable: a crash must not bring back the old symlink."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
