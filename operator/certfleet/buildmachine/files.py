"""The controller's file-backed ports on a build machine: the cache, the supplied MANUAL
certificates, the ACME accounts, and the one way they write (atomically, private).

    RUNTIMEDATA/CLOUDHOST/BUILD/ssl/DOMAIN/fullchain.pem, privkey.pem   the cache (0600, 0700)
    RUNTIMEDATA/.../ssl/DOMAIN/pending-order.json, pending-order.key     an order under way
    MANUAL_DIR/SECRET_NAME/fullchain.pem, privkey.pem                  what a person supplies
    STATE_DIR/acme-accounts/DIGEST.json                                ACME account keys (0600)

A file is written to a temporary file in its folder and renamed over the old one, so a crash
or a reader never sees half a key; folders are made 0700, files 0600.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from certfleet.acme_issuer.accounts import AccountId, StoredAccount
from certfleet.api.spec import CertificateSpec
from certfleet.controller import pending_orders, unpublished
from certfleet.controller.ports import Kept, PemPair, PendingOrder
from certfleet.core.domains import folder_name
from certfleet.core.errors import CertfleetError
from certfleet.core.pem import MAX_PEM_BYTES

FULLCHAIN_NAME = "fullchain.pem"
PRIVKEY_NAME = "privkey.pem"
MAX_ACCOUNT_BYTES = 64 * 1024


class FilesError(CertfleetError):
    """A file of the build machine could not be read or written; the message names it."""


def private_folder(path: Path) -> Path:
    """`path` and its missing parents, each made 0700 (an existing `path` is made 0700 too;
    existing parents are left as they are)."""
    try:
        missing = [folder for folder in (path, *path.parents) if not folder.exists()]
        for folder in reversed(missing):
            folder.mkdir(mode=0o700, exist_ok=True)
            folder.chmod(0o700)  # mkdir's mode is narrowed by the umask, never widened
        path.chmod(0o700)
    except OSError as error:
        raise FilesError(f"cannot make the folder {path}: {error.strerror}") from None
    return path


def write_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    """A temporary file beside `path` (created with `mode`), synced, renamed over it."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.chmod(temporary, mode)  # the umask may have narrowed it
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except OSError as error:
        raise FilesError(f"cannot write {path}: {error.strerror}") from None


def remove(path: Path) -> None:
    """`path` gone (it may be gone already), and the removal durable."""
    try:
        path.unlink(missing_ok=True)
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except OSError as error:
        raise FilesError(f"cannot remove {path}: {error.strerror}") from None


def read_bounded(path: Path, limit: int) -> bytes | None:
    """The file's bytes, None when it does not exist; FilesError when it is larger than
    `limit` or cannot be read."""
    try:
        with path.open("rb") as file:
            data = file.read(limit + 1)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise FilesError(f"cannot read {path}: {error.strerror}") from None
    if len(data) > limit:
        raise FilesError(f"{path} is larger than {limit} bytes")
    return data


def _read_pair(folder: Path) -> PemPair | None:
    """The pair in `folder`; empty bytes for a missing part, None when both are missing."""
    fullchain = read_bounded(folder / FULLCHAIN_NAME, MAX_PEM_BYTES)
    key = read_bounded(folder / PRIVKEY_NAME, MAX_PEM_BYTES)
    if fullchain is None and key is None:
        return None
    return PemPair(fullchain or b"", key or b"")


class FileCache:
    """The Cache port: the deployment toolkit's runtimedata folder, one per certificate."""

    def __init__(self, runtimedata: Path) -> None:
        self._root = runtimedata

    def folder(self, spec: CertificateSpec) -> Path:
        # Every part was validated by the spec's parser (no separators, no "..").
        return (
            self._root / spec.cloudhost / spec.build_identifier / "ssl" / folder_name(spec.domain)
        )

    def name(self, namespace: str, spec: CertificateSpec) -> str:
        return str(self.folder(spec))

    def read(self, namespace: str, spec: CertificateSpec) -> PemPair | None:
        return _read_pair(self.folder(spec))

    def read_kept(self, namespace: str, spec: CertificateSpec) -> Kept:
        marker = read_bounded(
            self.folder(spec) / unpublished.REPLACES_KEY, unpublished.MAX_MARKER_BYTES
        )
        return Kept(
            self.read(namespace, spec),
            self.read_pending(namespace, spec),
            unpublished.read_marker(marker),
        )

    def write(
        self, namespace: str, spec: CertificateSpec, pair: PemPair, replaces: int | None = None
    ) -> None:
        folder = private_folder(self.folder(spec))
        # The old marker goes first and the new one comes last: a marker never names another
        # certificate (without one, a crash in between falls back to the notBefore).
        remove(folder / unpublished.REPLACES_KEY)
        # The key first: a fullchain.pem never stands beside an older key alone for long.
        write_atomically(folder / PRIVKEY_NAME, pair.key)
        write_atomically(folder / FULLCHAIN_NAME, pair.fullchain)
        if replaces is not None:
            write_atomically(folder / unpublished.REPLACES_KEY, unpublished.marker(replaces))
        # Only once the certificate is kept: the order under way is done.
        for name in (pending_orders.ORDER_KEY, pending_orders.PRIVATE_KEY_KEY):
            remove(folder / name)

    def read_pending(self, namespace: str, spec: CertificateSpec) -> PendingOrder | None:
        folder = self.folder(spec)
        return pending_orders.read_pending_order(
            read_bounded(folder / pending_orders.ORDER_KEY, pending_orders.MAX_DOCUMENT_BYTES),
            read_bounded(folder / pending_orders.PRIVATE_KEY_KEY, pending_orders.MAX_KEY_BYTES),
        )

    def write_pending(self, namespace: str, spec: CertificateSpec, order: PendingOrder) -> None:
        folder = private_folder(self.folder(spec))
        # The key first: a document never names an order whose key is not on disk.
        write_atomically(folder / pending_orders.PRIVATE_KEY_KEY, order.key)
        write_atomically(folder / pending_orders.ORDER_KEY, pending_orders.order_document(order))


class FolderSuppliedCertificates:
    """The SuppliedCertificates port: a person puts a MANUAL certificate's fullchain.pem and
    privkey.pem into MANUAL_DIR/<spec.manual.secretName>/."""

    def __init__(self, manual_dir: Path) -> None:
        self._root = manual_dir

    def _folder(self, spec: CertificateSpec) -> Path | None:
        # The parser allows [a-z0-9.-] only; "." and ".." are not names of it.
        name = spec.manual_secret_name
        return self._root / name if name and name not in (".", "..") else None

    def describe(self, namespace: str, spec: CertificateSpec) -> str:
        return f"the folder {self._folder(spec)}/ ({FULLCHAIN_NAME}, {PRIVKEY_NAME})"

    def read(self, namespace: str, spec: CertificateSpec) -> PemPair | None:
        folder = self._folder(spec)
        return _read_pair(folder) if folder is not None else None


class FileAccountStore:
    """acme_issuer's AccountStore in files: one ACME account per `AccountId`."""

    def __init__(self, state_dir: Path) -> None:
        self._folder = state_dir / "acme-accounts"

    def path(self, account: AccountId) -> Path:
        return self._folder / f"{account.digest()}.json"

    def load(self, account: AccountId) -> StoredAccount | None:
        path = self.path(account)
        data = read_bounded(path, MAX_ACCOUNT_BYTES)
        if data is None:
            return None
        try:
            fields = json.loads(data)
            key, url = fields["key"], fields["accountUrl"]
        except (ValueError, KeyError, TypeError):
            raise FilesError(f"{path} is not an ACME account file of certfleet") from None
        if not isinstance(key, str) or not isinstance(url, str):
            raise FilesError(f"{path} is not an ACME account file of certfleet")
        return StoredAccount(key_json=key, account_url=url)

    def save(self, account: AccountId, stored: StoredAccount) -> None:
        private_folder(self._folder)
        document = {
            "directory": account.directory_url,
            "email": account.email,
            "namespace": account.namespace,
            "eabKeyID": account.eab_key_id,
            "accountUrl": stored.account_url,
            "key": stored.key_json,
        }
        write_atomically(self.path(account), json.dumps(document).encode())
