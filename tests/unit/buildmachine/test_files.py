"""The build machine's file ports on tmp_path: private modes, atomic writes, bounded reads."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from certfleet.acme_issuer.accounts import AccountId, StoredAccount
from certfleet.api.spec import parse_certificate_spec
from certfleet.buildmachine.files import (
    FileAccountStore,
    FileCache,
    FilesError,
    FolderSuppliedCertificates,
    read_bounded,
    write_atomically,
)
from certfleet.controller.ports import PemPair, PendingOrder

SPEC = parse_certificate_spec(
    {
        "domain": "*.Example.com",
        "cloudhost": "prod",
        "buildIdentifier": "build-7",
        "generationMethod": "MANUAL",
        "manual": {"secretName": "shop-tls"},
    }
)
PAIR = PemPair(b"-----BEGIN CERTIFICATE-----\nchain\n", b"-----BEGIN PRIVATE KEY-----\nkey\n")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_cache_is_the_toolkits_runtimedata_folder_private(tmp_path: Path) -> None:
    cache = FileCache(tmp_path / "runtimedata")
    assert cache.read("any", SPEC) is None
    cache.write("any", SPEC, PAIR)
    folder = tmp_path / "runtimedata" / "prod" / "build-7" / "ssl" / "_wildcard.example.com"
    assert cache.name("any", SPEC) == str(folder)
    assert cache.read("any", SPEC) == PAIR
    assert (folder / "fullchain.pem").read_bytes() == PAIR.fullchain
    assert mode(folder / "privkey.pem") == mode(folder / "fullchain.pem") == 0o600
    for made in (folder, folder.parent, tmp_path / "runtimedata"):
        assert mode(made) == 0o700, made
    assert sorted(p.name for p in folder.iterdir()) == ["fullchain.pem", "privkey.pem"]


def test_an_existing_parent_keeps_its_mode(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    FileCache(tmp_path).write("any", SPEC, PAIR)
    assert mode(tmp_path) == 0o755


def test_a_rewrite_replaces_the_file_whole_and_private(tmp_path: Path) -> None:
    target = tmp_path / "privkey.pem"
    target.write_bytes(b"old")
    target.chmod(0o644)
    write_atomically(target, b"new")
    assert target.read_bytes() == b"new" and mode(target) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["privkey.pem"]


def test_a_failed_write_names_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    with pytest.raises(FilesError, match="missing"):
        write_atomically(tmp_path / "missing" / "privkey.pem", b"x")
    assert list(tmp_path.iterdir()) == []


def test_reads_are_bounded(tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b"x" * 11)
    assert read_bounded(tmp_path / "absent", 10) is None
    with pytest.raises(FilesError, match="larger than 10 bytes"):
        read_bounded(tmp_path / "big", 10)


def test_a_supplied_certificate_is_read_from_the_folder_its_secret_name_names(
    tmp_path: Path,
) -> None:
    supplied = FolderSuppliedCertificates(tmp_path)
    assert supplied.read("any", SPEC) is None
    assert supplied.describe("any", SPEC) == (
        f"the folder {tmp_path / 'shop-tls'}/ (fullchain.pem, privkey.pem)"
    )
    (tmp_path / "shop-tls").mkdir()
    (tmp_path / "shop-tls" / "fullchain.pem").write_bytes(PAIR.fullchain)
    assert supplied.read("any", SPEC) == PemPair(PAIR.fullchain, b"")  # the key is missing
    (tmp_path / "shop-tls" / "privkey.pem").write_bytes(PAIR.key)
    assert supplied.read("any", SPEC) == PAIR


def test_acme_accounts_are_private_files_per_directory_and_email(tmp_path: Path) -> None:
    store = FileAccountStore(tmp_path / "state")
    account = StoredAccount(key_json='{"kty": "EC"}', account_url="https://ca/acct/1")
    ops = AccountId("https://ca/dir", "ops@example.com")
    assert store.load(ops) is None
    store.save(ops, account)
    assert store.load(ops) == account
    assert store.load(AccountId("https://ca/dir", None)) is None
    assert store.load(AccountId("https://ca/dir", "ops@example.com", namespace="team")) is None
    path = store.path(ops)
    assert mode(path) == 0o600 and mode(path.parent) == 0o700


def test_a_damaged_account_file_is_an_error_naming_it(tmp_path: Path) -> None:
    store = FileAccountStore(tmp_path)
    path = store.path(AccountId("https://ca/dir", None))
    path.parent.mkdir()
    path.write_text('{"key": 1}')
    with pytest.raises(FilesError, match="is not an ACME account file"):
        store.load(AccountId("https://ca/dir", None))


def test_an_order_under_way_is_kept_private_beside_the_cache_until_its_certificate_is(
    tmp_path: Path,
) -> None:
    cache = FileCache(tmp_path / "runtimedata")
    assert cache.read_pending("any", SPEC) is None
    key = b"-----BEGIN PRIVATE KEY-----\norder key\n-----END PRIVATE KEY-----\n"
    order = PendingOrder(
        "https://ca.test/dir", "https://ca.test/acct/1", "https://ca.test/order/9", ("a",), key
    )
    cache.write_pending("any", SPEC, order)
    folder = cache.folder(SPEC)
    for name in ("pending-order.json", "pending-order.key"):
        assert mode(folder / name) == 0o600
    assert b"PRIVATE" not in (folder / "pending-order.json").read_bytes()
    assert cache.read_pending("any", SPEC) == order
    assert cache.read("any", SPEC) is None  # an order is not a certificate

    cache.write("any", SPEC, PAIR)
    assert cache.read_pending("any", SPEC) is None
    assert sorted(path.name for path in folder.iterdir()) == ["fullchain.pem", "privkey.pem"]


def test_a_damaged_pending_order_is_no_order(tmp_path: Path) -> None:
    cache = FileCache(tmp_path)
    folder = cache.folder(SPEC)
    folder.mkdir(parents=True)
    (folder / "pending-order.json").write_bytes(b"{not json")
    (folder / "pending-order.key").write_bytes(b"-----BEGIN PRIVATE KEY-----\n")
    assert cache.read_pending("any", SPEC) is None
    (folder / "pending-order.json").write_bytes(b"x" * 100_000)
    with pytest.raises(FilesError, match="larger than"):
        cache.read_pending("any", SPEC)


def test_the_cache_keeps_the_marker_of_a_certificate_not_published_yet(tmp_path: Path) -> None:
    cache = FileCache(tmp_path)
    cache.write("any", SPEC, PAIR, replaces=3)
    marker = cache.folder(SPEC) / "replaces-revision"
    assert marker.read_bytes() == b"3" and mode(marker) == 0o600
    assert cache.read_kept("any", SPEC).replaces == 3
    cache.write("any", SPEC, PAIR)  # a copy of the published one: no marker
    assert not marker.exists() and cache.read_kept("any", SPEC).replaces is None
    for edited in (b"-1", b"3.0", b" 3", b""):
        marker.write_bytes(edited)
        assert cache.read_kept("any", SPEC).replaces is None, edited
    marker.write_bytes(b"9" * 21)
    with pytest.raises(FilesError, match="larger than 20 bytes"):
        cache.read_kept("any", SPEC)
