"""Where the test bed's programs are: Go-built ones from the cache, Debian's from /usr."""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent


class MissingProgramError(RuntimeError):
    """A program the test bed needs is not installed; the message says how to get it."""


@functools.cache
def go_bin_dir() -> Path:
    """Builds what is missing (a no-op on a warm cache) and returns the binaries' folder."""
    result = subprocess.run(
        ["bash", str(HERE / "build-binaries.sh")],
        check=False,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise MissingProgramError(
            f"tests/testbed/build-binaries.sh failed ({result.returncode}):\n"
            + result.stderr[-4000:]
        )
    return Path(result.stdout.strip().splitlines()[-1])


def go_program(name: str) -> Path:
    path = go_bin_dir() / name
    if not path.is_file():
        raise MissingProgramError(f"{path} is missing after build-binaries.sh")
    return path


def pinned_version(key: str) -> str:
    """A version pin of versions.env (KEY=VALUE lines), e.g. PEBBLE_VERSION."""
    for line in (HERE / "versions.env").read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() == key:
            return value.strip()
    raise MissingProgramError(f"versions.env pins no {key}")


def system_program(name: str) -> Path:
    for folder in ("/usr/sbin", "/usr/bin"):
        candidate = Path(folder) / name
        if candidate.is_file():
            return candidate
    found = shutil.which(name)
    if found is None:
        raise MissingProgramError(
            f"{name} is not installed: run tests/testbed/install-system-packages.sh"
        )
    return Path(found)
