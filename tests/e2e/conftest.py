"""Fixtures of the end-to-end tests: certfleet installed on the test bed's real servers."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from e2e.certificates import ManualCA
from e2e.fleet import Fleet
from testbed.acme_ca import AcmeCA
from testbed.certfleet_install import CertfleetInstall
from testbed.control_plane import ControlPlane
from testbed.s3 import S3Bucket
from testbed.webserver import Nginx


@pytest.fixture
def start_fleet(
    control_plane: ControlPlane,
    s3_bucket: S3Bucket,
    start_acme_ca: Callable[..., AcmeCA],
    start_nginx: Callable[..., Nginx],
    tmp_path: Path,
) -> Iterator[Callable[..., Fleet]]:
    """Starts a Fleet: its own pebble (`acme` options as AcmeCA's), CloudHost, namespace,
    nginx for HTTP-01, and `replicas` operators (extra `operator_args`), on the shared
    control plane or on the test's own (`plane`, for a test that restarts it)."""
    started: list[Fleet] = []

    def start(
        acme: Mapping[str, Any] | None = None,
        operator_args: Sequence[str] = (),
        replicas: int = 1,
        plane: ControlPlane | None = None,
    ) -> Fleet:
        plane = plane or control_plane
        ca = start_acme_ca(**(acme or {}))
        install = CertfleetInstall(plane, tmp_path / f"certfleet-{len(started)}")
        install.install_crds()
        suffix = secrets.token_hex(3)
        cloudhost, namespace = f"host-{suffix}", f"test-{suffix}"
        manual_ca = ManualCA()
        trust_bundle = ca.issuing_roots_pem() + manual_ca.root_pem
        master_key = install.create_cloudhost(
            cloudhost, s3_bucket.endpoint, s3_bucket.name, trust_bundle=trust_bundle
        )
        plane.kubectl("create", "namespace", namespace)
        nginx = start_nginx(
            http_port=ca.http_port, challenge_proxy=f"http://127.0.0.1:{install.http01_port}"
        )
        for _ in range(replicas):
            install.start_operator(ca, *operator_args)
        fleet = Fleet(
            install, ca, nginx, s3_bucket, namespace, cloudhost, master_key, manual_ca, trust_bundle
        )
        started.append(fleet)
        return fleet

    yield start
    for fleet in started:
        fleet.close()


@pytest.fixture
def fleet(start_fleet: Callable[..., Fleet]) -> Fleet:
    return start_fleet()
