"""The file installer on a real file system (tmp_path): permissions, the atomic switch,
rollback, pruning and the migration of a directory from before certfleet."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from certfleet.agent.installer import (
    STORE_DIR,
    CertificateInstaller,
    InstallError,
    directory_name,
)
from certfleet.core.errors import InvalidDomainError

DOMAIN = "www.example.com"


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def installer(tmp_path: Path) -> CertificateInstaller:
    return CertificateInstaller(tmp_path / "ssl" / "live", DOMAIN)


def test_first_install_creates_a_symlink_to_a_private_version(
    installer: CertificateInstaller,
) -> None:
    switch = installer.install(b"chain-1", b"key-1", label="0a1b")
    link = installer.link
    assert link == installer.root / DOMAIN
    assert link.is_symlink()
    target = os.readlink(link)
    assert not os.path.isabs(target), "a relative link resolves in every mount namespace"
    assert target == f"{STORE_DIR}/{DOMAIN}/{switch.current}"
    assert (link / "fullchain.pem").read_bytes() == b"chain-1"
    assert (link / "privkey.pem").read_bytes() == b"key-1"
    version = installer.store / switch.current
    assert mode(version) == 0o700
    assert mode(version / "privkey.pem") == 0o600
    assert mode(version / "fullchain.pem") == 0o644
    assert mode(installer.root / STORE_DIR) == 0o700
    assert mode(installer.store) == 0o700
    assert switch.previous_target is None
    assert "-0a1b-" in switch.current
    installed = installer.read_installed()
    assert installed is not None
    assert (installed.fullchain, installed.privkey, installed.version) == (
        b"chain-1",
        b"key-1",
        switch.current,
    )
    assert "key-1" not in repr(installed)


def test_permissions_hold_under_a_permissive_umask(installer: CertificateInstaller) -> None:
    old = os.umask(0)
    try:
        switch = installer.install(b"chain", b"key", label="01")
    finally:
        os.umask(old)
    assert mode(installer.store / switch.current / "privkey.pem") == 0o600
    assert mode(installer.store / switch.current) == 0o700


def test_a_second_install_switches_and_keeps_the_previous_for_rollback(
    installer: CertificateInstaller,
) -> None:
    first = installer.install(b"chain-1", b"key-1", label="01")
    second = installer.install(b"chain-2", b"key-2", label="02")
    assert (installer.link / "fullchain.pem").read_bytes() == b"chain-2"
    assert second.previous_target == f"{STORE_DIR}/{DOMAIN}/{first.current}"

    installer.rollback(second)
    assert (installer.link / "fullchain.pem").read_bytes() == b"chain-1"
    assert (installer.link / "privkey.pem").read_bytes() == b"key-1"
    assert installer.current_version() == first.current
    assert not (installer.store / second.current).exists(), "the refused version is dropped"


def test_rolling_back_the_first_install_leaves_nothing(installer: CertificateInstaller) -> None:
    switch = installer.install(b"chain", b"key", label="01")
    installer.rollback(switch)
    assert not os.path.lexists(installer.link)
    assert installer.read_installed() is None


def test_the_switch_is_one_rename_readers_never_see_a_missing_file(
    installer: CertificateInstaller,
) -> None:
    installer.install(b"chain-0", b"key-0", label="00")
    stop = threading.Event()
    seen: set[bytes] = set()
    failures: list[str] = []

    def read() -> None:
        while not stop.is_set():
            try:
                seen.add((installer.link / "fullchain.pem").read_bytes())
            except OSError as error:  # a missing or half-switched path would show here
                failures.append(str(error))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for number in range(1, 40):
            installer.install(f"chain-{number}".encode(), b"key", label=f"{number:02x}")
    finally:
        stop.set()
        reader.join()
    assert failures == []
    assert seen <= {f"chain-{number}".encode() for number in range(40)}
    assert len(seen) > 1, "the reader did not overlap with the switches"


def test_prune_keeps_the_newest_versions_and_the_current_one(
    installer: CertificateInstaller,
) -> None:
    switches = [installer.install(b"c", b"k", label=f"{n:02x}") for n in range(6)]
    # Back to the oldest version (what rolling back switch 1 restores): kept whatever its age.
    installer.rollback(switches[1])
    assert installer.current_version() == switches[0].current
    removed = installer.prune()
    assert sorted(removed) == [switches[2].current]
    assert installer.versions() == [s.current for s in (switches[0], *switches[3:])]
    assert (installer.link / "fullchain.pem").read_bytes() == b"c"


def test_a_directory_from_before_certfleet_is_migrated_and_is_the_rollback_copy(
    installer: CertificateInstaller,
) -> None:
    # certbot-like: a plain directory whose files are relative symlinks into an archive.
    archive = installer.root.parent / "archive" / DOMAIN
    archive.mkdir(parents=True)
    (archive / "fullchain1.pem").write_bytes(b"old-chain")
    (archive / "privkey1.pem").write_bytes(b"old-key")
    (archive / "chain1.pem").write_bytes(b"old-intermediate")
    installer.link.mkdir(parents=True)
    for name in ("fullchain", "privkey", "chain"):
        (installer.link / f"{name}.pem").symlink_to(f"../../archive/{DOMAIN}/{name}1.pem")

    switch = installer.install(b"new-chain", b"new-key", label="0b")
    assert installer.link.is_symlink()
    assert (installer.link / "fullchain.pem").read_bytes() == b"new-chain"
    assert switch.moved_aside is not None
    moved = installer.store / switch.moved_aside
    assert moved.is_dir() and not moved.is_symlink(), "the original folder is kept, not deleted"

    installer.rollback(switch)
    assert (installer.link / "fullchain.pem").read_bytes() == b"old-chain"
    assert (installer.link / "privkey.pem").read_bytes() == b"old-key"
    # Files beside the pair come back too: a config may name them.
    assert (installer.link / "chain.pem").read_bytes() == b"old-intermediate"
    assert mode(installer.link / "privkey.pem") == 0o600


def test_an_empty_directory_from_before_is_put_back_on_rollback(
    installer: CertificateInstaller,
) -> None:
    installer.link.mkdir(parents=True)
    switch = installer.install(b"chain", b"key", label="01")
    assert installer.link.is_symlink()
    installer.rollback(switch)
    assert installer.link.is_dir() and not installer.link.is_symlink()


def test_a_foreign_symlink_is_copied_for_rollback_and_left_untouched(
    installer: CertificateInstaller, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "fullchain.pem").write_bytes(b"foreign-chain")
    (elsewhere / "privkey.pem").write_bytes(b"foreign-key")
    installer.root.mkdir(parents=True)
    installer.link.symlink_to(elsewhere)
    switch = installer.install(b"chain", b"key", label="01")
    assert (installer.link / "fullchain.pem").read_bytes() == b"chain"
    installer.rollback(switch)
    assert (installer.link / "fullchain.pem").read_bytes() == b"foreign-chain"
    assert (elsewhere / "fullchain.pem").read_bytes() == b"foreign-chain"


def test_a_regular_file_in_the_way_is_an_error(installer: CertificateInstaller) -> None:
    installer.root.mkdir(parents=True)
    installer.link.write_text("not a folder")
    with pytest.raises(InstallError, match="neither a directory nor a symlink"):
        installer.install(b"chain", b"key", label="01")
    assert installer.link.read_text() == "not a folder"


def test_a_symlinked_store_is_refused(installer: CertificateInstaller, tmp_path: Path) -> None:
    installer.root.mkdir(parents=True)
    (tmp_path / "attacker").mkdir()
    (installer.root / STORE_DIR).symlink_to(tmp_path / "attacker")
    with pytest.raises(InstallError, match="symlink"):
        installer.install(b"chain", b"key", label="01")
    assert list((tmp_path / "attacker").iterdir()) == []


def test_an_oversize_installed_file_is_an_error(installer: CertificateInstaller) -> None:
    installer.link.mkdir(parents=True)
    (installer.link / "fullchain.pem").write_bytes(b"x" * (1024 * 1024 + 1))
    with pytest.raises(InstallError, match="larger than"):
        installer.read_installed()


def test_one_missing_file_reads_as_empty(installer: CertificateInstaller) -> None:
    installer.link.mkdir(parents=True)
    (installer.link / "fullchain.pem").write_bytes(b"chain")
    installed = installer.read_installed()
    assert installed is not None and (installed.fullchain, installed.privkey) == (b"chain", b"")


@pytest.mark.parametrize(
    "domain", ["../etc", "example.com/..", ".hidden.example.com", "a\x00b.com", "", "com"]
)
def test_a_domain_that_is_no_safe_folder_name_is_refused(domain: str) -> None:
    with pytest.raises(InvalidDomainError):
        directory_name(domain)


def test_a_wildcard_gets_a_folder_no_host_name_can_collide_with(tmp_path: Path) -> None:
    assert directory_name("*.Example.com") == "_wildcard.example.com"
    installer = CertificateInstaller(tmp_path, "*.example.com")
    installer.install(b"chain", b"key", label="01")
    assert (tmp_path / "_wildcard.example.com" / "fullchain.pem").read_bytes() == b"chain"


def test_the_lock_excludes_a_second_installer(tmp_path: Path) -> None:
    first = CertificateInstaller(tmp_path, DOMAIN)
    second = CertificateInstaller(tmp_path, DOMAIN)
    entered = threading.Event()

    def take() -> None:
        with second.locked():
            entered.set()

    with first.locked():
        thread = threading.Thread(target=take)
        thread.start()
        assert not entered.wait(0.2), "the second installer got in while the first held it"
    assert entered.wait(5), "the second installer never got the lock"
    thread.join()


def test_the_default_files_are_the_agents_own_in_0700_folders(tmp_path: Path) -> None:
    from certfleet.agent.installer import CertificateInstaller as Installer

    installer = Installer(tmp_path / "live", "www.example.com")
    installer.install(b"chain\n", b"key\n", label="01")
    version = installer.link.resolve()
    assert stat.S_IMODE(os.stat(version).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(version / "privkey.pem").st_mode) == 0o600
    assert not (version / "combined.pem").exists()


def test_the_webservers_group_and_modes_and_a_combined_pem(tmp_path: Path) -> None:
    from certfleet.agent.installer import CertificateInstaller as Installer
    from certfleet.agent.installer import FileModes

    group = os.getgid()
    modes = FileModes(group=group, key_file=0o640, directory=0o750)
    installer = Installer(tmp_path / "live", "www.example.com", modes=modes, combined_pem=True)
    installer.install(b"chain", b"key\n", label="01")
    version = installer.link.resolve()
    for folder in (tmp_path / "live" / ".certfleet", installer.store, version):
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o750
        assert os.stat(folder).st_gid == group
    for name in ("privkey.pem", "combined.pem"):
        info = os.stat(version / name)
        assert (stat.S_IMODE(info.st_mode), info.st_gid) == (0o640, group)
    assert (version / "combined.pem").read_bytes() == b"chain\nkey\n"


@pytest.mark.parametrize(
    ("key_file", "directory"), [(0o644, 0o700), (0o600, 0o777), (0o700, 0o700)]
)
def test_modes_that_open_the_key_to_the_world_are_refused(key_file: int, directory: int) -> None:
    from certfleet.agent.installer import FileModes

    with pytest.raises(ValueError, match="mode"):
        FileModes(key_file=key_file, directory=directory)


# -- a full disk: the symlink cannot be made, and <root>/<domain> stays as it was ----------


def _no_space(*_: object, **__: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def _leftovers(installer: CertificateInstaller) -> list[str]:
    return [name for name in os.listdir(installer.root) if name.endswith(".tmp")]


@pytest.mark.parametrize("failing", ["symlink", "replace"])
def test_a_failed_switch_leaves_the_installed_version_in_place(
    installer: CertificateInstaller, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    first = installer.install(b"chain-1", b"key-1", label="01")
    monkeypatch.setattr(os, failing, _no_space)
    with pytest.raises(InstallError, match="No space left"):
        installer.install(b"chain-2", b"key-2", label="02")
    monkeypatch.undo()
    assert installer.current_version() == first.current
    assert (installer.link / "fullchain.pem").read_bytes() == b"chain-1"
    assert installer.versions() == [first.current], "the unused version is removed"
    assert _leftovers(installer) == []


@pytest.mark.parametrize("failing", ["symlink", "replace"])
def test_a_failed_switch_leaves_a_directory_from_before_certfleet_in_place(
    installer: CertificateInstaller, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    installer.link.mkdir(parents=True)
    (installer.link / "fullchain.pem").write_bytes(b"old-chain")
    (installer.link / "privkey.pem").write_bytes(b"old-key")
    monkeypatch.setattr(os, failing, _no_space)
    with pytest.raises(InstallError, match="No space left"):
        installer.install(b"chain", b"key", label="01")
    monkeypatch.undo()
    assert installer.link.is_dir() and not installer.link.is_symlink()
    assert (installer.link / "fullchain.pem").read_bytes() == b"old-chain"
    assert (installer.link / "privkey.pem").read_bytes() == b"old-key"
    assert _leftovers(installer) == []


def test_a_failed_switch_puts_an_empty_directory_from_before_back(
    installer: CertificateInstaller, monkeypatch: pytest.MonkeyPatch
) -> None:
    installer.link.mkdir(parents=True)
    monkeypatch.setattr(os, "symlink", _no_space)
    with pytest.raises(InstallError, match="No space left"):
        installer.install(b"chain", b"key", label="01")
    monkeypatch.undo()
    assert installer.link.is_dir() and not installer.link.is_symlink()


def test_a_failed_rollback_symlink_leaves_the_new_version_in_place(
    installer: CertificateInstaller, monkeypatch: pytest.MonkeyPatch
) -> None:
    installer.install(b"chain-1", b"key-1", label="01")
    second = installer.install(b"chain-2", b"key-2", label="02")
    monkeypatch.setattr(os, "symlink", _no_space)
    with pytest.raises(InstallError, match="cannot restore"):
        installer.rollback(second)
    monkeypatch.undo()
    assert (installer.link / "fullchain.pem").read_bytes() == b"chain-2"


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real file system with room for only a few more inodes (root only: mount(8))."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; the injected failures above cover the logic")
    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,nr_inodes=12", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs as root: {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


def test_a_full_file_system_never_leaves_the_domain_path_missing(tiny_tmpfs: Path) -> None:
    installer = CertificateInstaller(tiny_tmpfs / "live", DOMAIN)
    with installer.locked():
        first = installer.install(b"chain-1", b"key-1", label="01")
    # 12 inodes: the new version's folder and files fit, its symlink does not.
    with (
        installer.locked(),
        pytest.raises(InstallError, match=r"cannot switch .* No space left"),
    ):
        installer.install(b"chain-2", b"key-2", label="02")
    assert installer.current_version() == first.current
    assert (installer.link / "fullchain.pem").read_bytes() == b"chain-1"
    assert installer.versions() == [first.current]
    assert _leftovers(installer) == []
