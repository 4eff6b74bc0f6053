"""certfleet's image (the Containerfile) in podman's local storage, and `podman run` of it on
the test bed's network. `image()` builds it through deploy/image/build-image.sh, as `make image`
does (seconds when the base and layers are cached), and fails saying why when podman cannot."""

from __future__ import annotations

import functools
import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "deploy" / "image" / "build-image.sh"
CONTAINERS_CONF = REPO / "deploy" / "image" / "containers.conf"
# What build-image.sh tags (IMAGE overrides it there and here).
REFERENCE = os.environ.get("IMAGE", "localhost/certfleet:dev")
# The Containerfile's USER: numeric, so Kubernetes' runAsNonRoot can check it.
IMAGE_USER = "65532:65532"


class ImageError(RuntimeError):
    """podman could not build or run the image; the message carries its output."""


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(
            ["podman", *args],
            capture_output=True,
            text=True,
            env=podman_env(),
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ImageError(f"podman {' '.join(args)}: {error}") from error
    if check and result.returncode != 0:
        raise ImageError(f"podman {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result


@functools.cache
def image() -> str:
    """The image reference, built (or found current) by build-image.sh."""
    try:
        result = subprocess.run(
            ["bash", str(BUILD_SCRIPT)],
            capture_output=True,
            text=True,
            env={**os.environ, "IMAGE": REFERENCE},
            timeout=900,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise ImageError(f"{BUILD_SCRIPT} did not finish within 15 minutes") from error
    if result.returncode != 0:
        raise ImageError(f"{BUILD_SCRIPT} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result.stdout.strip().splitlines()[-1]


def inspect(reference: str) -> dict[str, object]:
    (found,) = json.loads(podman("image", "inspect", reference).stdout)
    return dict(found)


def run_argv(
    name: str,
    reference: str,
    *,
    mounts: Mapping[Path, str] = {},
    env: Mapping[str, str] = {},
    options: Sequence[str] = (),
    args: Sequence[str] = (),
) -> list[str]:
    """`podman run` of the image's entrypoint (certfleet, with `args`) in the foreground, on
    the host's network (the test bed's servers listen on 127.0.0.1), read-only, with `mounts`
    (host path: container path, read-only unless the container path ends in ':rw')."""
    # `env`: the caller's process (a ServerProcess) gets podman's settings with its argv.
    argv = ["env", f"CONTAINERS_CONF={CONTAINERS_CONF}", "podman", "run", "--rm", "--name", name]
    argv += ["--network", "host", "--read-only"]
    for host, inside in mounts.items():
        target, _, mode = inside.partition(":")
        argv += ["--volume", f"{host}:{target}:{mode or 'ro'}"]
    for key, value in env.items():
        argv += ["--env", f"{key}={value}"]
    return [*argv, *options, reference, *args]


def remove(name: str) -> None:
    """Removes the container if it is still there (after a killed `podman run`)."""
    podman("rm", "--force", "--ignore", name, check=False)


def main_pid(name: str) -> int:
    """The host pid of the container's first process (certfleet itself: the entrypoint)."""
    return int(podman("inspect", "--format", "{{.State.Pid}}", name).stdout.strip())


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise ImageError(f"/proc/{pid}/status has no VmHWM")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
