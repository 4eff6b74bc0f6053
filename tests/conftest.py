"""Fixtures that start the test bed's real servers on loopback and always stop them.

Servers start only when a test asks for them, so unit tests never build or start anything.
A server that cannot start fails the test with its log; nothing is skipped.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed.acme_ca import AcmeCA
from testbed.control_plane import ControlPlane
from testbed.s3 import S3Bucket, S3Server
from testbed.webserver import Apache, Haproxy, Lighttpd, Nginx

_startup_seconds: dict[str, list[float]] = {}


def _record(times: dict[str, float]) -> None:
    for name, seconds in times.items():
        _startup_seconds.setdefault(name, []).append(seconds)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _startup_seconds:
        parts = [
            f"{name} {min(times):.2f}-{max(times):.2f} s (x{len(times)})"
            for name, times in sorted(_startup_seconds.items())
        ]
        terminalreporter.write_line("test bed start-up: " + ", ".join(parts))


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with ControlPlane(tmp_path_factory.mktemp("control-plane")) as plane:
        _record(plane.startup_seconds)
        yield plane


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with S3Server(tmp_path_factory.mktemp("s3")) as server:
        _record({"versitygw": server.startup_seconds})
        yield server


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> S3Bucket:
    """A fresh, empty bucket on the real S3 server."""
    return S3Bucket(s3_server.endpoint, s3_server.endpoint.new_bucket())


@pytest.fixture
def start_acme_ca(tmp_path: Path) -> Iterator[Callable[..., AcmeCA]]:
    """Starts pebble + challtestsrv (keyword arguments as AcmeCA's); all stopped after the test."""
    started: list[AcmeCA] = []

    def start(**options: Any) -> AcmeCA:
        ca = AcmeCA(tmp_path / f"acme-{len(started)}", **options)
        started.append(ca)
        ca.start()
        _record(ca.startup_seconds)
        return ca

    yield start
    for ca in started:
        ca.stop()


@pytest.fixture
def acme_ca(start_acme_ca: Callable[..., AcmeCA]) -> AcmeCA:
    return start_acme_ca()


@pytest.fixture
def start_nginx(tmp_path: Path) -> Iterator[Callable[..., Nginx]]:
    """Starts nginx instances (keyword arguments as Nginx's); all stopped after the test."""
    started: list[Nginx] = []

    def start(**options: Any) -> Nginx:
        prefix = tmp_path / f"nginx-{len(started)}"
        options.setdefault("certificate_dir", prefix / "ssl")
        server = Nginx(prefix, **options)
        started.append(server)
        server.start()
        _record({"nginx": server.startup_seconds})
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def start_lighttpd(tmp_path: Path) -> Iterator[Callable[..., Lighttpd]]:
    """Starts lighttpd instances (arguments as Lighttpd's after the prefix); all stopped."""
    started: list[Lighttpd] = []

    def start(
        root: Path, domains: list[str], *, prefix: Path | None = None, **options: Any
    ) -> Lighttpd:
        prefix = prefix or tmp_path / f"lighttpd-{len(started)}"
        server = Lighttpd(prefix, root, domains, **options)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def start_apache(tmp_path: Path) -> Iterator[Callable[..., Apache]]:
    """Starts apache2 instances (arguments as Apache's after the prefix); all stopped."""
    started: list[Apache] = []

    def start(root: Path, domains: list[str], **options: Any) -> Apache:
        server = Apache(tmp_path / f"apache-{len(started)}", root, domains, **options)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def start_haproxy(tmp_path: Path) -> Iterator[Callable[..., Haproxy]]:
    """Starts haproxy instances (arguments as Haproxy's after the prefix); all stopped."""
    started: list[Haproxy] = []

    def start(root: Path, domains: list[str], **options: Any) -> Haproxy:
        server = Haproxy(tmp_path / f"haproxy-{len(started)}", root, domains, **options)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """A folder every user may enter (pytest's are root's, 0700), for files a webserver's
    unprivileged workers read; removed after the test."""
    folder = Path(tempfile.mkdtemp(prefix="certfleet-shared-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)
