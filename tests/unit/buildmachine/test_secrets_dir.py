"""The CloudHosts' secrets as files: what is missing or wrong is named, values never are."""

from __future__ import annotations

import dataclasses
import secrets
from pathlib import Path

import pytest

from certfleet.api.spec import ObjectRef, parse_cloudhost
from certfleet.buildmachine.secrets_dir import FileDatastores, SecretsDir
from certfleet.controller.gather import DatastoreNotConfiguredError
from certfleet.datastore.encryption import MasterKey
from certfleet.datastore.s3_store import S3Datastore

CLOUDHOST = parse_cloudhost(
    "prod",
    {
        "endpoint": "http://127.0.0.1:9",
        "bucket": "certfleet-unit",
        "credentialsSecretRef": {"namespace": "ops", "name": "creds"},
        "encryptionKeySecretRef": {"namespace": "ops", "name": "key"},
    },
)
ACCESS, SECRET = "AKIA-unit-test", "s3cr3t-unit-value"


def secrets_dir(tmp_path: Path, key: bytes | None = None, *credentials: str) -> SecretsDir:
    (tmp_path / "ops" / "key").mkdir(parents=True)
    (tmp_path / "ops" / "key" / "key").write_bytes(secrets.token_bytes(32) if key is None else key)
    (tmp_path / "ops" / "creds").mkdir()
    for name, value in zip(("accessKeyID", "secretAccessKey"), credentials, strict=False):
        (tmp_path / "ops" / "creds" / name).write_text(value + "\n")
    return SecretsDir(tmp_path)


def test_a_cloudhost_with_its_files_is_a_datastore_built_once(tmp_path: Path) -> None:
    clients: list[object] = []
    datastores = FileDatastores(
        {"prod": CLOUDHOST}, secrets_dir(tmp_path, None, ACCESS, SECRET), clients.append
    )
    config, store = datastores.datastore("prod")
    assert config is CLOUDHOST and isinstance(store, S3Datastore)
    assert datastores.datastore("prod")[1] is store and len(clients) == 1


@pytest.mark.parametrize(
    ("key", "credentials", "message"),
    [
        (b"short", (ACCESS, SECRET), "ops/key/key must hold the 32 random bytes"),
        (None, (ACCESS,), "needs both accessKeyID and secretAccessKey"),
    ],
)
def test_what_is_missing_is_named_and_no_value_is_told(
    tmp_path: Path, key: bytes | None, credentials: tuple[str, ...], message: str
) -> None:
    datastores = FileDatastores({"prod": CLOUDHOST}, secrets_dir(tmp_path, key, *credentials))
    with pytest.raises(DatastoreNotConfiguredError) as raised:
        datastores.datastore("prod")
    assert message in str(raised.value)
    assert ACCESS not in str(raised.value) and SECRET not in str(raised.value)


def test_an_unknown_cloudhost_is_not_configured(tmp_path: Path) -> None:
    with pytest.raises(DatastoreNotConfiguredError, match="'other' is in none of the files"):
        FileDatastores({"prod": CLOUDHOST}, SecretsDir(tmp_path)).datastore("other")


@pytest.mark.parametrize("ref", [ObjectRef("..", "x"), ObjectRef("ops", "a/b")])
def test_a_reference_cannot_leave_the_secrets_folder(tmp_path: Path, ref: ObjectRef) -> None:
    with pytest.raises(DatastoreNotConfiguredError, match="cannot name a secret's folder"):
        SecretsDir(tmp_path).folder(ref)


def test_an_eab_value_is_read_from_its_file(tmp_path: Path) -> None:
    (tmp_path / "shop" / "eab").mkdir(parents=True)
    (tmp_path / "shop" / "eab" / "hmac").write_bytes(b"mac-key")
    found = SecretsDir(tmp_path)
    assert found.value("shop", "eab", "hmac") == b"mac-key"
    assert found.value("shop", "eab", "absent") is None
    assert found.value("shop", "eab", "../eab/hmac") is None


def test_previous_master_keys_are_read_after_the_current_one(tmp_path: Path) -> None:
    current = secrets.token_bytes(32)
    folders = secrets_dir(tmp_path, current, ACCESS, SECRET)
    (tmp_path / "ops" / "old-key").mkdir()
    old = secrets.token_bytes(32)
    (tmp_path / "ops" / "old-key" / "key").write_bytes(old)
    rotating = dataclasses.replace(
        CLOUDHOST, previous_encryption_keys=(ObjectRef("ops", "old-key"),)
    )
    _, store = FileDatastores({"prod": rotating}, folders).datastore("prod")
    assert isinstance(store, S3Datastore)
    assert [key.key_id_hex for key in store.keys.keys] == [
        MasterKey(current).key_id_hex,
        MasterKey(old).key_id_hex,
    ]


def test_a_missing_previous_master_key_is_named(tmp_path: Path) -> None:
    rotating = dataclasses.replace(
        CLOUDHOST, previous_encryption_keys=(ObjectRef("ops", "old-key"),)
    )
    datastores = FileDatastores({"prod": rotating}, secrets_dir(tmp_path, None, ACCESS, SECRET))
    with pytest.raises(DatastoreNotConfiguredError, match="ops/old-key/key"):
        datastores.datastore("prod")
