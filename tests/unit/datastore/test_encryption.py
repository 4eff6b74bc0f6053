"""Envelope encryption of private keys: round trip, binding, tampering, key rotation."""

from __future__ import annotations

import hashlib
import os

import pytest

from certfleet.datastore import (
    DatastoreIntegrityError,
    MasterKey,
    UnknownMasterKeyError,
    envelope_decrypt,
    envelope_encrypt,
)
from certfleet.datastore.encryption import (
    ENVELOPE_OVERHEAD_BYTES,
    HEADER_BYTES,
    KeyRing,
    key_id_of,
)

AD = b"certfleet/prod/aws-eu-1/build-42/www.example.com/revisions/1/privkey.pem.enc"
PLAINTEXT = b"-----BEGIN PRIVATE KEY-----\n" + os.urandom(200) + b"\n-----END PRIVATE KEY-----\n"


@pytest.fixture
def key() -> MasterKey:
    return MasterKey(os.urandom(32))


def test_round_trip(key: MasterKey) -> None:
    blob = envelope_encrypt(PLAINTEXT, key, AD)
    assert len(blob) == len(PLAINTEXT) + ENVELOPE_OVERHEAD_BYTES
    assert PLAINTEXT not in blob
    assert envelope_decrypt(blob, [key], AD) == PLAINTEXT


def test_every_blob_has_its_own_data_key_and_nonce(key: MasterKey) -> None:
    first, second = envelope_encrypt(PLAINTEXT, key, AD), envelope_encrypt(PLAINTEXT, key, AD)
    assert first[13:HEADER_BYTES] != second[13:HEADER_BYTES]
    assert first[HEADER_BYTES:] != second[HEADER_BYTES:]


def test_key_id_is_the_start_of_the_master_keys_sha256(key: MasterKey) -> None:
    secret = b"k" * 32
    assert MasterKey(secret).key_id_hex == hashlib.sha256(secret).hexdigest()[:16]
    assert key_id_of(envelope_encrypt(PLAINTEXT, key, AD)) == key.key_id_hex


def test_repr_shows_no_key_material() -> None:
    secret = bytes(range(32))
    text = repr(MasterKey(secret)) + str(MasterKey(secret))
    assert secret.hex() not in text
    assert repr(secret) not in text
    assert "key_id=" in text


@pytest.mark.parametrize("length", [0, 16, 31, 33, 64])
def test_master_key_must_be_32_bytes(length: int) -> None:
    with pytest.raises(ValueError):
        MasterKey(os.urandom(length))


def test_master_key_must_be_bytes() -> None:
    with pytest.raises(TypeError):
        MasterKey("a" * 32)  # type: ignore[arg-type]


def test_rotation_old_blobs_decrypt_with_the_old_key_in_the_list(key: MasterKey) -> None:
    new_key = MasterKey(os.urandom(32))
    old_blob = envelope_encrypt(PLAINTEXT, key, AD)
    new_blob = envelope_encrypt(PLAINTEXT, new_key, AD)
    keyring = [new_key, key]
    assert envelope_decrypt(old_blob, keyring, AD) == PLAINTEXT
    assert envelope_decrypt(new_blob, keyring, AD) == PLAINTEXT
    # Once the old key is dropped, its blobs say which key they need.
    with pytest.raises(UnknownMasterKeyError, match=key.key_id_hex):
        envelope_decrypt(old_blob, [new_key], AD)


def test_wrong_key_is_an_integrity_error(key: MasterKey) -> None:
    blob = envelope_encrypt(PLAINTEXT, key, AD)
    with pytest.raises(DatastoreIntegrityError):
        envelope_decrypt(blob, [MasterKey(os.urandom(32))], AD)
    with pytest.raises(DatastoreIntegrityError):
        envelope_decrypt(blob, [], AD)


def test_blob_bound_to_its_s3_key(key: MasterKey) -> None:
    blob = envelope_encrypt(PLAINTEXT, key, AD)
    other = AD.replace(b"www.example.com", b"evil.example.com")
    with pytest.raises(DatastoreIntegrityError, match="modified, or copied"):
        envelope_decrypt(blob, [key], other)
    with pytest.raises(DatastoreIntegrityError):
        envelope_decrypt(blob, [key], AD.replace(b"/1/", b"/2/"))


def test_every_flipped_bit_is_detected(key: MasterKey) -> None:
    blob = envelope_encrypt(b"secret key", key, AD)
    for index in range(len(blob)):
        for bit in (0x01, 0x80):
            tampered = bytearray(blob)
            tampered[index] ^= bit
            with pytest.raises(DatastoreIntegrityError):
                envelope_decrypt(bytes(tampered), [key], AD)


def test_colliding_key_id_with_wrong_key_is_an_integrity_error(key: MasterKey) -> None:
    # An attacker cannot find a colliding id, but the wrap's own check must still hold.
    impostor = MasterKey(os.urandom(32))
    impostor.key_id = key.key_id
    blob = envelope_encrypt(PLAINTEXT, key, AD)
    with pytest.raises(DatastoreIntegrityError, match="does not unwrap"):
        envelope_decrypt(blob, [impostor], AD)
    assert envelope_decrypt(blob, [impostor, key], AD) == PLAINTEXT


@pytest.mark.parametrize(
    "blob",
    [b"", b"CFEK", b"CFEK\x01" + b"\x00" * 60, b"XXXX\x01" + b"\x00" * 100],
)
def test_truncated_or_foreign_blobs(key: MasterKey, blob: bytes) -> None:
    with pytest.raises(DatastoreIntegrityError):
        envelope_decrypt(blob, [key], AD)


def test_unknown_format_version(key: MasterKey) -> None:
    blob = bytearray(envelope_encrypt(PLAINTEXT, key, AD))
    blob[4] = 2
    with pytest.raises(DatastoreIntegrityError, match="version 2"):
        envelope_decrypt(bytes(blob), [key], AD)


def test_error_messages_carry_no_key_material(key: MasterKey) -> None:
    secret = os.urandom(32)
    master = MasterKey(secret)
    blob = envelope_encrypt(PLAINTEXT, master, AD)
    for keys, ad in (([key], AD), ([master], b"elsewhere")):
        with pytest.raises(DatastoreIntegrityError) as caught:
            envelope_decrypt(blob, keys, ad)
        message = str(caught.value)
        assert secret.hex() not in message
        assert PLAINTEXT.decode("latin-1") not in message


# -- derived keys and the key ring ---------------------------------------------------------


def test_derived_keys_differ_by_purpose_and_from_the_master_key(key: MasterKey) -> None:
    mac_key, other = key.derive(b"pointer-mac v2"), key.derive(b"something else")
    assert len(mac_key) == 32 and mac_key != other
    assert mac_key != key._secret
    assert mac_key == key.derive(b"pointer-mac v2"), "derivation is deterministic"
    assert MasterKey(os.urandom(32)).derive(b"pointer-mac v2") != mac_key
    with pytest.raises(ValueError, match="purpose"):
        key.derive(b"")


def test_the_pointer_mac_key_is_hkdf_sha256_of_the_master_key() -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    secret = bytes(range(32))
    expected = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"certfleet/pointer-mac v2"
    ).derive(secret)
    assert MasterKey(secret).derive(b"pointer-mac v2") == expected


def test_a_key_ring_finds_keys_by_id_the_current_one_first(key: MasterKey) -> None:
    old = MasterKey(os.urandom(32))
    ring = KeyRing([key, old, key])
    assert ring.current is key
    assert ring.keys == (key, old)
    assert ring.find(old.key_id_hex) is old and ring.find(key.key_id_hex) is key
    assert ring.find("00" * 8) is None and ring.find("not hex") is None
    assert ring.key_ids == f"{key.key_id_hex}, {old.key_id_hex}"
    assert key._secret.hex() not in repr(ring)


def test_a_key_ring_needs_a_current_key() -> None:
    with pytest.raises(ValueError, match="current"):
        KeyRing([])
