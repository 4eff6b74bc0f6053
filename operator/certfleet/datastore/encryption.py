"""Envelope encryption of private keys before they leave the operator.

Each object gets its own random 256-bit data key. The data key encrypts the private key with
AES-256-GCM and is itself wrapped (AES key wrap, RFC 3394) by a 256-bit master key that the
caller holds (a Kubernetes Secret). So the bucket alone never reveals a key, and rotating the
master key needs only the small wrapped data keys, not a new certificate.

Blob format, version 1 (all fields fixed-length, so the header is unambiguous):

    offset  size  field
    0       4     magic b"CFEK" (certfleet envelope key)
    4       1     format version, 1
    5       8     master key id: sha256(master key)[:8]
    13      40    data key wrapped with the master key (AES key wrap)
    53      12    GCM nonce
    65      n+16  AES-256-GCM ciphertext and tag

The GCM associated data is the 65-byte header followed by the caller's associated data (the
object's S3 key), so neither the header nor the object's place can be changed unnoticed: a
blob copied to another domain, build or revision fails to decrypt.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from certfleet.datastore.errors import DatastoreIntegrityError, UnknownMasterKeyError

MAGIC = b"CFEK"
FORMAT_VERSION = 1
MASTER_KEY_BYTES = 32
KEY_ID_BYTES = 8
_DATA_KEY_BYTES = 32
_WRAPPED_KEY_BYTES = _DATA_KEY_BYTES + 8
_NONCE_BYTES = 12
_TAG_BYTES = 16
HEADER_BYTES = len(MAGIC) + 1 + KEY_ID_BYTES + _WRAPPED_KEY_BYTES + _NONCE_BYTES
# A blob is exactly this much longer than its plaintext.
ENVELOPE_OVERHEAD_BYTES = HEADER_BYTES + _TAG_BYTES
# The envelope's content type, also written as S3 object metadata beside the blob.
ENVELOPE_SCHEME = "certfleet-envelope-v1:aes256-kw+aes256-gcm"


class MasterKey:
    """A 256-bit master key. Its repr shows the key id only, so it is safe in logs."""

    __slots__ = ("_secret", "key_id")

    def __init__(self, secret: bytes) -> None:
        if not isinstance(secret, bytes | bytearray):
            raise TypeError("a master key must be bytes")
        if len(secret) != MASTER_KEY_BYTES:
            # The length is no secret; the bytes are.
            raise ValueError(f"a master key must be {MASTER_KEY_BYTES} bytes, got {len(secret)}")
        self._secret = bytes(secret)
        self.key_id: bytes = hashlib.sha256(self._secret).digest()[:KEY_ID_BYTES]

    @property
    def key_id_hex(self) -> str:
        return self.key_id.hex()

    def __repr__(self) -> str:
        return f"MasterKey(key_id={self.key_id_hex})"

    def derive(self, purpose: bytes) -> bytes:
        """A 256-bit key for one `purpose` (HKDF-SHA256, RFC 5869, the purpose as its info).
        Keys for different purposes are independent: the pointer's MAC key reveals nothing
        of the master key, which wraps the data keys."""
        if not purpose:
            raise ValueError("a derived key needs a purpose")
        return HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"certfleet/" + purpose
        ).derive(self._secret)

    def _wrap(self, data_key: bytes) -> bytes:
        return aes_key_wrap(self._secret, data_key)

    def _unwrap(self, wrapped: bytes) -> bytes:
        return aes_key_unwrap(self._secret, wrapped)


class KeyRing:
    """The master keys of one CloudHost: the current one (new revisions and pointers are
    sealed with it) and the previous ones (still read, by key id, during a rotation)."""

    __slots__ = ("_by_id", "current")

    def __init__(self, keys: Sequence[MasterKey]) -> None:
        if not keys:
            raise ValueError("a key ring needs at least its current master key")
        self.current: MasterKey = keys[0]
        self._by_id: dict[bytes, MasterKey] = {}
        for key in keys:
            if not isinstance(key, MasterKey):
                raise TypeError("a key ring holds MasterKey values")
            # The same key listed twice is harmless; keep the first.
            self._by_id.setdefault(key.key_id, key)

    @property
    def keys(self) -> tuple[MasterKey, ...]:
        """Every key, the current one first."""
        return tuple(self._by_id.values())

    @property
    def key_ids(self) -> str:
        """The configured ids, for messages ("a, b")."""
        return ", ".join(key.key_id_hex for key in self.keys)

    def find(self, key_id_hex: str) -> MasterKey | None:
        """The key with this hex id, or None when it is not configured."""
        try:
            key_id = bytes.fromhex(key_id_hex)
        except (ValueError, TypeError):
            return None
        return self._by_id.get(key_id)

    def __repr__(self) -> str:
        return f"KeyRing(current={self.current.key_id_hex}, all=[{self.key_ids}])"


def envelope_encrypt(plaintext: bytes, master_key: MasterKey, associated_data: bytes) -> bytes:
    """Encrypt under a fresh data key; bind the result to `associated_data` (the S3 key)."""
    data_key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(_NONCE_BYTES)
    header = (
        MAGIC + bytes([FORMAT_VERSION]) + master_key.key_id + master_key._wrap(data_key) + nonce
    )
    assert len(header) == HEADER_BYTES
    ciphertext = AESGCM(data_key).encrypt(nonce, plaintext, header + associated_data)
    return header + ciphertext


def key_id_of(blob: bytes) -> str:
    """The hex id of the master key a blob was encrypted under (read from its header)."""
    _check_header(blob)
    return blob[5 : 5 + KEY_ID_BYTES].hex()


def _check_header(blob: bytes) -> None:
    if len(blob) < HEADER_BYTES + _TAG_BYTES:
        raise DatastoreIntegrityError("encrypted key is truncated: shorter than its header")
    if blob[: len(MAGIC)] != MAGIC:
        raise DatastoreIntegrityError("encrypted key has no certfleet envelope header")
    version = blob[len(MAGIC)]
    if version != FORMAT_VERSION:
        raise DatastoreIntegrityError(
            f"encrypted key has envelope format version {version}; this certfleet reads "
            f"version {FORMAT_VERSION}"
        )


def envelope_decrypt(
    blob: bytes, master_keys: Iterable[MasterKey], associated_data: bytes
) -> bytes:
    """Decrypt a blob from `envelope_encrypt`, trying every master key whose id matches.

    Raises UnknownMasterKeyError when no configured key has the blob's key id, and
    DatastoreIntegrityError when the blob, its header or its associated data was changed.
    """
    _check_header(blob)
    key_id = blob[5 : 5 + KEY_ID_BYTES]
    offset = 5 + KEY_ID_BYTES
    wrapped = blob[offset : offset + _WRAPPED_KEY_BYTES]
    offset += _WRAPPED_KEY_BYTES
    nonce = blob[offset : offset + _NONCE_BYTES]
    header, ciphertext = blob[:HEADER_BYTES], blob[HEADER_BYTES:]

    keys = list(master_keys)
    candidates = [key for key in keys if key.key_id == key_id]
    if not candidates:
        configured = ", ".join(key.key_id_hex for key in keys) or "none"
        raise UnknownMasterKeyError(
            f"encrypted key was sealed with master key id {key_id.hex()}; "
            f"configured master key ids: {configured}"
        )
    for key in candidates:
        try:
            data_key = key._unwrap(wrapped)
        except InvalidUnwrap:
            continue
        try:
            return AESGCM(data_key).decrypt(nonce, ciphertext, header + associated_data)
        except InvalidTag:
            # Deliberately one message for "changed" and "moved": GCM cannot tell them apart.
            raise DatastoreIntegrityError(
                "encrypted key failed authentication: it was modified, or copied from "
                "another location"
            ) from None
    raise DatastoreIntegrityError(
        f"wrapped data key does not unwrap under master key id {key_id.hex()}: the blob "
        "was modified, or the master key with this id is not the one it was sealed with"
    )
