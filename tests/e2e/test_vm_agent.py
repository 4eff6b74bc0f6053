"""One agent process serving several certificates to a real webserver on a VM: the test bed's
S3 (versitygw), a real lighttpd serving each name by SNI, `certfleet agent` as a process."""

from __future__ import annotations

import secrets
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from certfleet.core.facts import certificate_facts
from certfleet.datastore.encryption import MasterKey
from certfleet.datastore.location import DatastoreLocation
from certfleet.datastore.s3_store import S3Datastore
from e2e.certificates import ManualCA
from testbed.certfleet_install import REPO
from testbed.s3 import S3Bucket
from testbed.waiting import wait_for
from testbed.webserver import Lighttpd, served_serial_by_sni

pytestmark = pytest.mark.testbed


def test_one_agent_serves_three_certificates_to_lighttpd_with_one_reload_per_batch(
    s3_bucket: S3Bucket, tmp_path: Path, start_lighttpd: Callable[..., Lighttpd]
) -> None:
    ca = ManualCA()
    trust = tmp_path / "trust.pem"
    trust.write_bytes(ca.certificate.public_bytes(serialization.Encoding.PEM))
    tag = secrets.token_hex(3)
    domains = [f"{name}-{tag}.certfleet.test" for name in ("www", "auth", "proxy")]
    master = secrets.token_bytes(32)
    (tmp_path / "master.key").write_bytes(master)
    endpoint = s3_bucket.endpoint
    (tmp_path / "id").write_text(endpoint.access_key)
    (tmp_path / "secret").write_text(endpoint.secret_key)
    store = S3Datastore(endpoint.client(), [MasterKey(master)])
    locations = {d: DatastoreLocation(s3_bucket.name, "certfleet", "vm", "b1", d) for d in domains}

    def publish_all() -> dict[str, str]:
        serials: dict[str, str] = {}
        for domain in domains:
            pair = ca.leaf(domain, valid_from_days=-1 + len(serials) / 100)
            facts = certificate_facts(pair.certificate)
            current = store.read_current(locations[domain])
            store.publish(
                locations[domain],
                pair.fullchain,
                pair.key,
                facts.serial,
                facts.not_before,
                facts.not_after,
                current.pointer_etag if current else None,
            )
            serials[domain] = facts.serial
        return serials

    root = tmp_path / "live"
    flags = [
        sys.executable,
        "-m",
        "certfleet.cli",
        "agent",
        f"--s3-endpoint={endpoint.url}",
        f"--s3-region={endpoint.region}",
        f"--s3-bucket={s3_bucket.name}",
        f"--access-key-id-file={tmp_path / 'id'}",
        f"--secret-access-key-file={tmp_path / 'secret'}",
        f"--master-key-file={tmp_path / 'master.key'}",
        "--cloudhost=vm",
        "--build-identifier=b1",
        f"--domain={','.join(domains)}",
        f"--cert-root={root}",
        f"--trust-bundle={trust}",
        "--metrics-port=0",
        "--node-name=vm-1",
    ]
    first = publish_all()
    init = subprocess.run([*flags, "--once", "--no-reload"], capture_output=True, text=True)
    assert init.returncode == 0, init.stderr
    lighttpd = start_lighttpd(root, domains)
    for domain in domains:
        assert (
            served_serial_by_sni(lighttpd.address, lighttpd.https_port, domain, trust)
            == (first[domain])
        )
    starts = lighttpd.starts_logged()

    second = publish_all()
    published = time.monotonic()
    once = subprocess.run(
        [
            *flags,
            "--once",
            "--webserver=lighttpd",
            f"--test-command={shlex.join(lighttpd.test_command)}",
            f"--webserver-pid-file={lighttpd.pid_file}",
            f"--probe-address={lighttpd.address}:{lighttpd.https_port}",
            f"--probe-ca-file={trust}",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert once.returncode == 0, once.stderr
    for domain in domains:
        wait_for(
            f"lighttpd serving {second[domain]} for {domain}",
            lambda d=domain: (  # type: ignore[misc]
                served_serial_by_sni(lighttpd.address, lighttpd.https_port, d, trust) == second[d]
            ),
        )
    took = time.monotonic() - published
    assert lighttpd.starts_logged() == starts + 1, "one graceful restart for the batch"
    print(f"three certificates served {took:.2f} s after the pointers changed")
