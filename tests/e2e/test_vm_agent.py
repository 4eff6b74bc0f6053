"""`certfleet agent` on a VM, as cron or a systemd timer runs it (`--once`), on the test bed's
S3 (versitygw) with real webservers: one process serving several certificates to lighttpd by
SNI; haproxy from combined.pem; an nginx, an Apache and a lighttpd side by side, each reloaded
once per batch; and a lighttpd whose workers run as www-data reading group-readable keys."""

from __future__ import annotations

import grp
import os
import secrets
import shlex
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
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
from testbed.webserver import Apache, Haproxy, Lighttpd, Nginx, served_serial_by_sni

pytestmark = pytest.mark.testbed


class Vm:
    """A VM's view of one CloudHost: its S3 files copied over, a test CA its probes trust, and
    `certfleet agent` run as a process, as cron runs it."""

    def __init__(self, s3_bucket: S3Bucket, folder: Path, domains: Sequence[str]) -> None:
        self.folder = folder
        self.ca = ManualCA()
        self.trust = folder / "trust.pem"
        self.trust.write_bytes(self.ca.certificate.public_bytes(serialization.Encoding.PEM))
        self.domains = list(domains)
        master = secrets.token_bytes(32)
        (folder / "master.key").write_bytes(master)
        endpoint = s3_bucket.endpoint
        (folder / "id").write_text(endpoint.access_key)
        (folder / "secret").write_text(endpoint.secret_key)
        self.store = S3Datastore(endpoint.client(), [MasterKey(master)])
        self.locations = {
            d: DatastoreLocation(s3_bucket.name, "certfleet", "vm", "b1", d) for d in domains
        }
        # As /etc/certfleet/agent.env gives them (examples/vm/agent.env), and as flags.
        self.environment = {
            "CERTFLEET_S3_ENDPOINT": endpoint.url,
            "CERTFLEET_S3_REGION": endpoint.region,
            "CERTFLEET_S3_BUCKET": s3_bucket.name,
            "CERTFLEET_S3_ACCESS_KEY_ID_FILE": str(folder / "id"),
            "CERTFLEET_S3_SECRET_ACCESS_KEY_FILE": str(folder / "secret"),
            "CERTFLEET_MASTER_KEY_FILE": str(folder / "master.key"),
            "CERTFLEET_CLOUDHOST": "vm",
            "CERTFLEET_BUILD_IDENTIFIER": "b1",
            "CERTFLEET_DOMAINS": ",".join(domains),
            "CERTFLEET_METRICS_PORT": "0",
            "CERTFLEET_NODE_NAME": "vm-1",
            "CERTFLEET_TRUST_BUNDLE": str(self.trust),  # the test CA is no public root
        }
        self.flags = [
            f"--s3-endpoint={endpoint.url}",
            f"--s3-region={endpoint.region}",
            f"--s3-bucket={s3_bucket.name}",
            f"--access-key-id-file={folder / 'id'}",
            f"--secret-access-key-file={folder / 'secret'}",
            f"--master-key-file={folder / 'master.key'}",
            "--cloudhost=vm",
            "--build-identifier=b1",
            f"--domain={','.join(domains)}",
            "--metrics-port=0",
            "--node-name=vm-1",
            f"--trust-bundle={self.trust}",
        ]
        self._published = 0

    def publish(self, domains: Sequence[str] | None = None) -> dict[str, str]:
        """A new certificate for each domain (all by default); its serial by domain."""
        serials: dict[str, str] = {}
        for domain in domains or self.domains:
            self._published += 1
            pair = self.ca.leaf(domain, valid_from_days=-2 + self._published / 100)
            facts = certificate_facts(pair.certificate)
            current = self.store.read_current(self.locations[domain])
            self.store.publish(
                self.locations[domain],
                pair.fullchain,
                pair.key,
                facts.serial,
                facts.not_before,
                facts.not_after,
                current.pointer_etag if current else None,
            )
            serials[domain] = facts.serial
        return serials

    def agent(self, *flags: str) -> subprocess.CompletedProcess[str]:
        """`certfleet agent` once, as the cron line of deploy/vm runs it."""
        argv = [sys.executable, "-m", "certfleet.cli", "agent", *self.flags, "--once", *flags]
        return subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=120)

    def cron(self, **settings: str) -> subprocess.CompletedProcess[str]:
        """deploy/vm's cron line, run by /bin/sh as cron runs it, over an agent.env of the
        VM's settings and these (CERTFLEET_ names without the prefix); its log's text is the
        result's stdout."""
        env_file, log = self.folder / "agent.env", self.folder / "certfleet-agent.log"
        values = {**self.environment, **{f"CERTFLEET_{k}": v for k, v in settings.items()}}
        env_file.write_text("".join(f'{name}="{value}"\n' for name, value in values.items()))
        (line,) = [
            each
            for each in (REPO / "deploy" / "vm" / "certfleet-agent.cron").read_text().splitlines()
            if each.strip() and not each.startswith("#")
        ]
        command = line.split(None, 6)[6]  # after the five time fields and the user
        for installed, here in (
            ("/etc/certfleet/agent.env", str(env_file)),
            ("/usr/local/bin/certfleet", str(Path(sys.executable).parent / "certfleet")),
            ("/var/log/certfleet-agent.log", str(log)),
        ):
            assert installed in command, f"the cron line no longer names {installed}"
            command = command.replace(installed, here)
        log.write_text("")
        # cron's environment: next to nothing (but the code under test, where it is).
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.folder), "LANG": "C.UTF-8"}
        if "PYTHONPATH" in os.environ:
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        ran = subprocess.run(
            ["/bin/sh", "-c", command], capture_output=True, text=True, env=env, timeout=120
        )
        return subprocess.CompletedProcess(ran.args, ran.returncode, log.read_text(), ran.stderr)

    def served(self, server: Nginx | Apache | Lighttpd | Haproxy, domain: str) -> str:
        return served_serial_by_sni(server.address, server.https_port, domain, self.trust)

    def wait_served(
        self, server: Nginx | Apache | Lighttpd | Haproxy, serials: dict[str, str]
    ) -> None:
        """A verified handshake per name shows each serial (a reload hands the listener to new
        workers asynchronously)."""
        for domain, serial in serials.items():
            wait_for(
                lambda d=domain: f"{d} served as {self.served(server, d)}",  # type: ignore[misc]
                lambda d=domain, s=serial: self.served(server, d) == s,  # type: ignore[misc]
            )


def test_one_agent_serves_three_certificates_to_lighttpd_with_one_reload_per_batch(
    s3_bucket: S3Bucket, tmp_path: Path, start_lighttpd: Callable[..., Lighttpd]
) -> None:
    tag = secrets.token_hex(3)
    domains = [f"{name}-{tag}.certfleet.test" for name in ("www", "auth", "proxy")]
    vm = Vm(s3_bucket, tmp_path, domains)
    root = tmp_path / "live"
    first = vm.publish()
    init = vm.agent(f"--cert-root={root}", "--no-reload")
    assert init.returncode == 0, init.stderr
    lighttpd = start_lighttpd(root, domains)
    vm.wait_served(lighttpd, first)
    starts = lighttpd.starts_logged()

    second = vm.publish()
    published = time.monotonic()
    once = vm.agent(
        f"--cert-root={root}",
        "--webserver=lighttpd",
        f"--test-command={shlex.join(lighttpd.test_command)}",
        f"--webserver-pid-file={lighttpd.pid_file}",
        f"--probe-address={lighttpd.address}:{lighttpd.https_port}",
        f"--probe-ca-file={vm.trust}",
    )
    assert once.returncode == 0, once.stderr
    vm.wait_served(lighttpd, second)
    took = time.monotonic() - published
    assert lighttpd.starts_logged() == starts + 1, "one graceful restart for the batch"
    print(f"three certificates served {took:.2f} s after the pointers changed")


def test_haproxy_serves_combined_pem_and_a_rotation_after_a_graceful_reload(
    s3_bucket: S3Bucket, tmp_path: Path, start_haproxy: Callable[..., Haproxy]
) -> None:
    tag = secrets.token_hex(3)
    domains = [f"{name}-{tag}.certfleet.test" for name in ("www", "auth")]
    vm = Vm(s3_bucket, tmp_path, domains)
    root = tmp_path / "live"
    first = vm.publish()
    # The init step before haproxy starts: --webserver haproxy writes combined.pem too.
    init = vm.agent(f"--cert-root={root}", "--no-reload", "--webserver=haproxy")
    assert init.returncode == 0, init.stderr
    for domain in domains:
        combined = root / domain / "combined.pem"
        text = combined.read_text()
        assert text.startswith("-----BEGIN CERTIFICATE-----") and "PRIVATE KEY-----" in text
        assert stat.S_IMODE(combined.stat().st_mode) == 0o600
    haproxy = start_haproxy(root, domains)
    vm.wait_served(haproxy, first)

    second = vm.publish()
    once = vm.agent(
        f"--cert-root={root}",
        f"--webserver=haproxy pid-file={haproxy.pid_file} "
        f"test={shlex.quote(shlex.join(haproxy.test_command))}",
        f"--probe-address={haproxy.address}:{haproxy.https_port}",
        f"--probe-ca-file={vm.trust}",
    )
    assert once.returncode == 0, once.stderr
    vm.wait_served(haproxy, second)
    assert haproxy.reloads_logged() == 1, "one graceful reload (SIGUSR2) for both"
    assert haproxy.alive()

    # An unchanged datastore: the next cron run reloads nothing.
    again = vm.agent(
        f"--cert-root={root}",
        f"--webserver=haproxy pid-file={haproxy.pid_file}",
        f"--probe-address={haproxy.address}:{haproxy.https_port}",
        f"--probe-ca-file={vm.trust}",
    )
    assert again.returncode == 0, again.stderr
    assert haproxy.reloads_logged() == 1


def test_one_agent_serves_an_nginx_an_apache_and_a_lighttpd_reloading_each_once_per_batch(
    s3_bucket: S3Bucket,
    tmp_path: Path,
    start_nginx: Callable[..., Nginx],
    start_apache: Callable[..., Apache],
    start_lighttpd: Callable[..., Lighttpd],
) -> None:
    tag = secrets.token_hex(3)
    site, auth, static = (f"{name}-{tag}.certfleet.test" for name in ("www", "auth", "static"))
    vm = Vm(s3_bucket, tmp_path, [site, auth, static])
    root = tmp_path / "live"
    first = vm.publish()
    init = vm.agent(f"--cert-root={root}", "--no-reload")
    assert init.returncode == 0, init.stderr
    nginx = start_nginx(certificate_dir=root / site)
    apache = start_apache(root, [auth])
    lighttpd = start_lighttpd(root, [static])
    servers: dict[str, Nginx | Apache | Lighttpd] = {site: nginx, auth: apache, static: lighttpd}
    for domain, server in servers.items():
        vm.wait_served(server, {domain: first[domain]})

    def quoted(command: list[str]) -> str:
        return shlex.quote(shlex.join(command))

    # Each webserver the way its admin reloads it: nginx by its command, Apache and lighttpd
    # by their graceful signal to the pid file's master; each probed at its own listener. In
    # agent.env, separated by ';', for deploy/vm's cron line.
    webservers = "; ".join(
        [
            f"nginx domains={site} test={quoted(nginx.test_command)} "
            f"reload={quoted(nginx.reload_command)} probe={nginx.address}:{nginx.https_port}",
            f"apache2 domains={auth} test={quoted(apache.test_command)} "
            f"pid-file={apache.pid_file} probe={apache.address}:{apache.https_port}",
            f"lighttpd domains={static} test={quoted(lighttpd.test_command)} "
            f"pid-file={lighttpd.pid_file} probe={lighttpd.address}:{lighttpd.https_port}",
        ]
    )
    settings = {"CERT_ROOT": str(root), "PROBE_CA_FILE": str(vm.trust), "WEBSERVER": webservers}

    def reloads() -> dict[str, int]:
        return {domain: server.reloads_logged() for domain, server in servers.items()}

    before = reloads()
    second = vm.publish()
    once = vm.cron(**settings)
    assert once.returncode == 0, once.stdout
    for domain, server in servers.items():
        vm.wait_served(server, {domain: second[domain]})
    after = reloads()
    assert {d: after[d] - before[d] for d in servers} == dict.fromkeys(servers, 1), (
        "one reload per webserver for the batch"
    )

    # Only the auth server's certificate changes: only Apache reloads.
    third = vm.publish([auth])
    once = vm.cron(**settings)
    assert once.returncode == 0, once.stdout
    vm.wait_served(apache, third)
    vm.wait_served(nginx, {site: second[site]})
    vm.wait_served(lighttpd, {static: second[static]})
    last = reloads()
    assert {d: last[d] - after[d] for d in servers} == {site: 0, auth: 1, static: 0}


def test_group_readable_keys_let_lighttpds_www_data_workers_reload(
    s3_bucket: S3Bucket,
    tmp_path: Path,
    shared_folder: Path,
    start_lighttpd: Callable[..., Lighttpd],
) -> None:
    """Debian's lighttpd drops to www-data and reads its certificates again as www-data at a
    graceful restart: with the agent's default 0600 key it would go down; given to the group
    www-data in 0640 (0750 folders) it serves the new certificate, and nobody else reads it."""
    domain = f"www-{secrets.token_hex(3)}.certfleet.test"
    vm = Vm(s3_bucket, tmp_path, [domain])
    root = shared_folder / "live"  # pytest's own folders are closed to www-data
    modes = ["--file-group=www-data", "--file-mode=0640", "--dir-mode=0750"]
    first = vm.publish()
    init = vm.agent(f"--cert-root={root}", "--no-reload", *modes)
    assert init.returncode == 0, init.stderr
    lighttpd = start_lighttpd(root, [domain], prefix=shared_folder / "lighttpd", user="www-data")
    assert lighttpd.process is not None
    workers = subprocess.run(
        ["ps", "-o", "user=", "-p", str(lighttpd.process.pid)], capture_output=True, text=True
    )
    assert workers.stdout.strip() == "www-data", "lighttpd did not drop to www-data"
    vm.wait_served(lighttpd, first)

    second = vm.publish()
    once = vm.agent(
        f"--cert-root={root}",
        *modes,
        "--webserver=lighttpd",
        f"--test-command={shlex.join(lighttpd.test_command)}",
        f"--webserver-pid-file={lighttpd.pid_file}",
        f"--probe-address={lighttpd.address}:{lighttpd.https_port}",
        f"--probe-ca-file={vm.trust}",
    )
    assert once.returncode == 0, once.stderr
    vm.wait_served(lighttpd, second)
    assert lighttpd.process.alive() and lighttpd.reloads_logged() == 1

    key = root / domain / "privkey.pem"
    www_data = grp.getgrnam("www-data").gr_gid
    info = key.stat()
    assert (stat.S_IMODE(info.st_mode), info.st_gid) == (0o640, www_data)
    assert not info.st_mode & stat.S_IRWXO, "the key is not world readable"
    folder = (root / domain).resolve()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o750 and folder.stat().st_gid == www_data
    as_www_data = _cat_as("www-data", key)
    assert as_www_data.returncode == 0 and "PRIVATE KEY" in as_www_data.stdout
    as_nobody = _cat_as("nobody", key)
    assert as_nobody.returncode != 0 and "Permission denied" in as_nobody.stderr


def _cat_as(user: str, path: Path) -> subprocess.CompletedProcess[str]:
    assert os.geteuid() == 0, "the test bed runs as root, to switch to www-data"
    return subprocess.run(
        ["runuser", "-u", user, "--", "cat", str(path)], capture_output=True, text=True
    )
