"""The webserver agent end to end on the real test bed: versitygw S3, real nginx instances with
real reloads and TLS handshakes, the real control plane for the status, and (once) the real
operator publishing (DESIGN.md step 5).

Most tests publish with S3Datastore.publish directly (certificates from a test CA the agents'
probes trust) and run the agents in-process, one thread each, exactly as `certfleet agent`
wires them (main.build_agent from the same flags). The operator test runs them as
`python -m certfleet.cli agent` processes. Every wait polls a condition against a deadline.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import random
import secrets
import shlex
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from prometheus_client import CollectorRegistry

from certfleet.agent import config as agent_config
from certfleet.agent import main as agent_main
from certfleet.agent.certificate import MAX_RELOADS_FOR_UNSERVED
from certfleet.agent.installer import CertificateInstaller
from certfleet.agent.loop import Agent
from certfleet.agent.watch import CertificateWatch
from certfleet.core.facts import certificate_facts
from certfleet.datastore.encryption import MasterKey, envelope_encrypt
from certfleet.datastore.location import DatastoreLocation
from certfleet.datastore.pointer import Pointer
from certfleet.datastore.s3_store import S3Datastore
from e2e.certificates import ManualCA, Pair
from testbed.acme_ca import AcmeCA
from testbed.certfleet_install import REPO, CertfleetInstall, load_example
from testbed.control_plane import ControlPlane
from testbed.processes import ServerProcess, free_port, http_ok
from testbed.s3 import S3Bucket, S3Endpoint, S3Server
from testbed.waiting import wait_for
from testbed.webserver import Apache, Nginx, served_serial_by_sni

pytestmark = pytest.mark.testbed

INTERVAL = 0.5  # the agents' poll interval, seconds
PREFIX = "certfleet"
BUILD = "build-1"
AGENT_USER = "certfleet-agent"


def agent_rbac(namespace: str) -> str:
    """deploy/node-agent/rbac.yaml's Role with its rules as shipped (no Secrets, its own status
    only), in the test's namespace and bound to the test's agent user instead of the
    DaemonSet's service account: so the agents here run with the rights a deployment gives
    them. Without its resourceNames (one certificate there, several here: that narrowing is
    tests/e2e/test_deploy_layouts.py's)."""
    shipped = [
        document
        for document in yaml.safe_load_all(
            (REPO / "deploy" / "node-agent" / "rbac.yaml").read_text()
        )
        if document and document.get("kind") == "Role"
    ]
    assert shipped, "deploy/node-agent/rbac.yaml grants the agent no role"
    documents: list[dict[str, Any]] = []
    for role in shipped:
        metadata = {"name": f"{role['metadata']['name']}-e2e", "namespace": namespace}
        rules = [
            {key: value for key, value in rule.items() if key != "resourceNames"}
            for rule in role["rules"]
        ]
        documents.append({**role, "metadata": metadata, "rules": rules})
        documents.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": metadata,
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": metadata["name"],
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": AGENT_USER}
                ],
            }
        )
    return yaml.safe_dump_all(documents)


def serial_of(pair: Pair) -> str:
    return certificate_facts(pair.certificate).serial


def served_serial(nginx: Nginx, domain: str, trust: Path) -> str:
    """The serial a verified handshake sees (for a moment after a graceful reload, an old
    worker may still accept a connection: callers wait for a condition, they do not sample)."""
    try:
        return certificate_facts(nginx.served_certificate(domain, trust)).serial
    except OSError as error:
        return f"<no verified handshake: {error}>"


# -- the datastore, written directly -----------------------------------------------------


@dataclass
class Datastore:
    """The S3 folder of one domain, and the ways a test writes to it."""

    bucket: S3Bucket
    location: DatastoreLocation
    master_key: bytes
    directory: Path

    @property
    def store(self) -> S3Datastore:
        return S3Datastore(self.bucket.endpoint.client(), [MasterKey(self.master_key)])

    def _etag(self) -> str | None:
        """The pointer's ETag, read without verifying the revision (it may be a bad one)."""
        client = self.bucket.endpoint.client()
        try:
            head = client.head_object(Bucket=self.bucket.name, Key=self.location.pointer_key)
        except client.exceptions.ClientError:
            return None
        return head["ETag"]

    def publish(self, pair: Pair, privkey: bytes | None = None) -> str:
        facts = certificate_facts(pair.certificate)
        self.store.publish(
            self.location,
            pair.fullchain,
            privkey or pair.key,
            facts.serial,
            facts.not_before,
            facts.not_after,
            self._etag(),
        )
        return facts.serial

    def pointer_body(self) -> bytes:
        client = self.bucket.endpoint.client()
        found = client.get_object(Bucket=self.bucket.name, Key=self.location.pointer_key)
        body: bytes = found["Body"].read()
        return body

    def put_pointer(self, body: bytes) -> None:
        """Write an earlier current.json back: a rollback by whoever can write the bucket."""
        client = self.bucket.endpoint.client()
        client.put_object(Bucket=self.bucket.name, Key=self.location.pointer_key, Body=body)

    def publish_with_flipped_bytes(self, pair: Pair) -> None:
        """A revision whose fullchain lost a bit at rest after it was verified: the pointer
        carries the digests of the intact files (as the operator wrote them)."""
        client = self.bucket.endpoint.client()
        current = self.store.read_current(self.location)
        assert current is not None, "publish a good revision first"
        revision = current.pointer.revision + 1
        flipped = bytearray(pair.fullchain)
        flipped[len(flipped) // 3] ^= 0x04
        privkey_key = self.location.privkey_key(revision)
        blob = envelope_encrypt(pair.key, MasterKey(self.master_key), privkey_key.encode())
        for key, body in (
            (self.location.fullchain_key(revision), bytes(flipped)),
            (privkey_key, blob),
        ):
            client.put_object(Bucket=self.bucket.name, Key=key, Body=body)
        facts = certificate_facts(pair.certificate)
        pointer = Pointer(
            revision=revision,
            serial=facts.serial,
            not_before=facts.not_before,
            not_after=facts.not_after,
            fullchain_sha256=hashlib.sha256(pair.fullchain).hexdigest(),
            privkey_sha256=hashlib.sha256(pair.key).hexdigest(),
            privkey_enc_sha256=hashlib.sha256(blob).hexdigest(),
            published_at=datetime.now(UTC).replace(microsecond=0),
            key_id=MasterKey(self.master_key).key_id_hex,
        )
        client.put_object(
            Bucket=self.bucket.name,
            Key=self.location.pointer_key,
            Body=pointer.to_json(self.location, MasterKey(self.master_key)),
            IfMatch=current.pointer_etag,
        )

    def files(self, endpoint: S3Endpoint) -> dict[str, Path]:
        """The secret files an agent reads: master key and S3 credentials (mounted Secrets)."""
        paths = {
            "master": self.directory / "master.key",
            "id": self.directory / "accessKeyID",
            "secret": self.directory / "secretAccessKey",
        }
        self.directory.mkdir(parents=True, exist_ok=True)
        paths["master"].write_bytes(self.master_key)
        paths["id"].write_text(endpoint.access_key)
        paths["secret"].write_text(endpoint.secret_key)
        return paths


@dataclass
class Node:
    name: str
    nginx: Nginx
    agent: Agent
    registry: CollectorRegistry
    root: Path
    thread: threading.Thread | None = None
    hint: CertificateWatch | None = None

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples `name` whose labels include `labels` (the domain is implied:
        these agents serve one certificate)."""
        return sum(
            each.value
            for family in self.registry.collect()
            for each in family.samples
            if each.name == name and labels.items() <= each.labels.items()
        )

    def installed_serial(self, domain: str) -> str:
        files = CertificateInstaller(self.root, domain).read_installed()
        assert files is not None
        return certificate_facts(x509.load_pem_x509_certificate(files.fullchain)).serial


class LocalServer(Protocol):
    """What the agent's flags need from a test bed webserver (Nginx, Apache)."""

    @property
    def address(self) -> str: ...

    @property
    def https_port(self) -> int: ...

    @property
    def test_command(self) -> list[str]: ...

    @property
    def reload_command(self) -> list[str]: ...


def agent_flags(
    *,
    name: str,
    server: LocalServer | None,
    root: Path,
    endpoint: S3Endpoint,
    datastore: Datastore,
    trust: Path,
    extra: tuple[str, ...] = (),
    kind: str = "nginx",
) -> list[str]:
    location = datastore.location
    files = datastore.files(endpoint)
    flags = [
        f"--s3-endpoint={endpoint.url}",
        f"--s3-region={endpoint.region}",
        f"--s3-bucket={location.bucket}",
        f"--s3-prefix={location.prefix}",
        f"--access-key-id-file={files['id']}",
        f"--secret-access-key-file={files['secret']}",
        f"--master-key-file={files['master']}",
        f"--cloudhost={location.cloudhost}",
        f"--build-identifier={location.build_identifier}",
        f"--domain={location.domain}",
        f"--cert-root={root}",
        # What it installs must chain to the test's CA (the CloudHost's trust bundle).
        f"--trust-bundle={trust}",
        f"--poll-interval={INTERVAL}",
        "--max-backoff=2",
        f"--node-name={name}",
        "--metrics-port=0",
        *extra,
    ]
    if server is None:
        return [*flags, "--once", "--no-reload"]  # the init step: no webserver runs yet
    return [
        *flags,
        f"--webserver={kind}",
        # The test bed's servers have their own prefixes and configs: their own commands.
        f"--test-command={shlex.join(server.test_command)}",
        f"--reload-command={shlex.join(server.reload_command)}",
        f"--probe-address={server.address}:{server.https_port}",
        f"--probe-ca-file={trust}",
    ]


def build(
    flags: list[str], client: Any = None
) -> tuple[Agent, CollectorRegistry, agent_config.AgentConfig]:
    parser = argparse.ArgumentParser()
    agent_config.add_arguments(parser)
    registry = CollectorRegistry()
    config = agent_config.config_from_args(parser.parse_args(flags))
    return agent_main.build_agent(config, registry, client=client), registry, config


@dataclass
class Fleet:
    """Nodes (nginx + agent in a thread) for one domain, all stopped after the test."""

    tmp_path: Path
    start_nginx: Callable[..., Nginx]
    datastore: Datastore
    endpoint: S3Endpoint
    trust: Path
    ca: ManualCA
    nodes: list[Node] = field(default_factory=list)

    @property
    def domain(self) -> str:
        return self.datastore.location.domain

    def add(
        self,
        name: str,
        *,
        init_step: bool = False,
        endpoint: S3Endpoint | None = None,
        client: Any = None,
        extra: tuple[str, ...] = (),
        watch: bool = False,
    ) -> Node:
        root = self.tmp_path / name / "ssl" / "live"
        endpoint = endpoint or self.endpoint
        if init_step:
            # A fresh node: the certificate is installed before the webserver serves at all.
            flags = agent_flags(
                name=name,
                server=None,
                root=root,
                endpoint=endpoint,
                datastore=self.datastore,
                trust=self.trust,
            )
            once, _, _ = build(flags)
            result = once.sync_once()
            assert result.ok, result
        nginx = self.start_nginx(certificate_dir=root / self.domain)
        flags = agent_flags(
            name=name,
            server=nginx,
            root=root,
            endpoint=endpoint,
            datastore=self.datastore,
            trust=self.trust,
            extra=extra,
        )
        agent, registry, config = build(flags, client)
        node = Node(name, nginx, agent, registry, root)
        if watch:
            node.hint = agent_main.start_watch(config, agent)
            assert node.hint is not None
        node.thread = threading.Thread(target=agent.run, name=f"agent-{name}", daemon=True)
        node.thread.start()
        self.nodes.append(node)
        return node

    def stop(self) -> None:
        for node in self.nodes:
            node.agent.stop()
            if node.hint is not None:
                node.hint.stop()
        for node in self.nodes:
            assert node.thread is not None
            node.thread.join(timeout=20)
            assert not node.thread.is_alive(), f"agent {node.name} did not stop"

    def serving(self, serial: str) -> bool:
        return all(
            served_serial(node.nginx, self.domain, self.trust) == serial for node in self.nodes
        )

    def describe(self) -> str:
        return "; ".join(
            f"{node.name} serves {served_serial(node.nginx, self.domain, self.trust)}, agent says "
            f"{node.agent.last_result}"
            for node in self.nodes
        )

    def wait_serving(self, serial: str, timeout: float = 15) -> float:
        """Until every node serves `serial`; returns the seconds it took."""
        started = time.monotonic()
        wait_for(
            lambda: f"serial {serial}: {self.describe()}",
            lambda: self.serving(serial),
            timeout,
            interval=0.02,
        )
        return time.monotonic() - started


@pytest.fixture
def ca() -> ManualCA:
    return ManualCA()


@pytest.fixture
def trust(ca: ManualCA, tmp_path: Path) -> Path:
    path = tmp_path / "trust.pem"
    path.write_bytes(ca.certificate.public_bytes(serialization.Encoding.PEM))
    return path


def _datastore(bucket: S3Bucket, tmp_path: Path, cloudhost: str = "sandbox") -> Datastore:
    domain = f"www-{secrets.token_hex(4)}.certfleet.test"
    location = DatastoreLocation(bucket.name, PREFIX, cloudhost, BUILD, domain)
    return Datastore(bucket, location, secrets.token_bytes(32), tmp_path / "secrets")


@pytest.fixture
def fleet(
    s3_bucket: S3Bucket,
    start_nginx: Callable[..., Nginx],
    tmp_path: Path,
    ca: ManualCA,
    trust: Path,
) -> Iterator[Fleet]:
    found = Fleet(
        tmp_path, start_nginx, _datastore(s3_bucket, tmp_path), s3_bucket.endpoint, trust, ca
    )
    try:
        yield found
    finally:
        found.stop()


def _polls(node: Node) -> float:
    """Every conditional read of the pointer the node has made, whatever it found."""
    return node.metric("certfleet_agent_polls_total")


# -- the tests -------------------------------------------------------------------------


def test_three_nodes_serve_a_new_certificate_within_two_poll_intervals(fleet: Fleet) -> None:
    first = fleet.ca.leaf(fleet.domain, valid_from_days=-2)
    first_serial = fleet.datastore.publish(first)
    fleet.add("node-a")
    fleet.add("node-b")
    fresh = fleet.add("node-c", init_step=True)
    # The fresh node served the real certificate from its first handshake: no placeholder.
    assert fresh.metric("certfleet_agent_reloads_total", result="success") == 0
    fleet.wait_serving(first_serial)  # verified handshakes: chain and name, as clients see it

    second = fleet.ca.leaf(fleet.domain, valid_from_days=-1)
    polls_before = {node.name: _polls(node) for node in fleet.nodes}
    second_serial = fleet.datastore.publish(second)
    took = fleet.wait_serving(second_serial)
    print(f"3 nodes served the new serial {took:.2f} s after the publish (interval {INTERVAL} s)")
    # Counted, not timed: each node saw the change within two polls (a third may have been in
    # flight when the pointer changed), so no node waited for a later interval.
    for node in fleet.nodes:
        polls = _polls(node) - polls_before[node.name]
        assert polls <= 3, f"{node.name} polled {polls} times before it served the new serial"
    # Each agent confirms by its own handshake, then says so in its metrics.
    wait_for(
        fleet.describe,
        lambda: all(
            node.metric(
                "certfleet_agent_served_serial_info", domain=fleet.domain, serial=second_serial
            )
            == 1
            for node in fleet.nodes
        ),
        timeout=5,
    )
    expires = second.certificate.not_valid_after_utc.timestamp()
    for node in fleet.nodes:
        assert node.installed_serial(fleet.domain) == second_serial
        assert node.metric("certfleet_agent_certificate_expiration_timestamp_seconds") == expires
        link = node.root / fleet.domain
        assert link.is_symlink() and (link / "privkey.pem").stat().st_mode & 0o777 == 0o600
        # nginx's placeholder folder on nodes a and b was taken over, and kept aside.
        kept = list((node.root / ".certfleet" / fleet.domain).glob("pre-certfleet-*"))
        assert len(kept) == (0 if node is fresh else 1), kept


class CountingProxy:
    """A TCP relay in front of S3 that counts bytes each way and the HTTP status lines."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        self.sent = self.received = 0
        self.responses: list[bytes] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self) -> None:
        with self._lock:
            self.sent = self.received = 0
            self.responses = []

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, request: bool) -> None:
        try:
            while data := source.recv(65536):
                with self._lock:
                    if request:
                        self.sent += len(data)
                    else:
                        self.received += len(data)
                        self.responses += [
                            line.split(b"\r\n")[0] for line in data.split(b"HTTP/1.1 ")[1:]
                        ]
                target.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, target):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._stopped.set()
        self.server.close()


@dataclass
class Operations:
    """The S3 operations an agent's boto3 client made (a before-parameter-build hook)."""

    seen: list[tuple[str, str, bool]] = field(default_factory=list)

    def hook(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.seen.append((model.name, str(params.get("Key", "")), "IfNoneMatch" in params))


def test_an_idle_agent_downloads_nothing(fleet: Fleet, s3_server: S3Server) -> None:
    serial = fleet.datastore.publish(fleet.ca.leaf(fleet.domain))
    upstream = int(fleet.endpoint.url.rsplit(":", 1)[1])
    proxy = CountingProxy(upstream)
    try:
        through_proxy = S3Endpoint(
            f"http://127.0.0.1:{proxy.port}",
            fleet.endpoint.region,
            fleet.endpoint.access_key,
            fleet.endpoint.secret_key,
        )
        operations = Operations()
        client = through_proxy.client()
        client.meta.events.register("before-parameter-build.s3", operations.hook)
        node = fleet.add("node-a", endpoint=through_proxy, client=client)
        fleet.wait_serving(serial)
        wait_for(
            "no unchanged poll",
            lambda: node.metric("certfleet_agent_polls_total", result="unchanged") >= 1,
        )
        proxy.reset()
        operations.seen.clear()
        start = node.metric("certfleet_agent_polls_total", result="unchanged")
        reloads = node.metric("certfleet_agent_reloads_total", result="success")
        wait_for(
            "six idle polls",
            lambda: node.metric("certfleet_agent_polls_total", result="unchanged") >= start + 6,
        )
        polls = int(node.metric("certfleet_agent_polls_total", result="unchanged") - start)
        with proxy._lock:
            sent, received, responses = proxy.sent, proxy.received, list(proxy.responses)
        seen = list(operations.seen)
    finally:
        proxy.close()
    pointer_key = fleet.datastore.location.pointer_key
    # Requests counted at the wire may trail the metric by the one in flight.
    assert len(seen) in (polls, polls + 1), seen
    assert all(op == ("GetObject", pointer_key, True) for op in seen), seen
    assert responses and all(line.startswith(b"304") for line in responses), responses
    per_poll = (sent + received) / len(responses)
    print(
        f"idle poll: {len(seen)} requests in {polls} intervals, {sent / len(responses):.0f} B "
        f"sent + {received / len(responses):.0f} B received per poll, all 304, no body"
    )
    assert per_poll < 2048, f"{per_poll:.0f} bytes per idle poll"
    assert node.metric("certfleet_agent_reloads_total", result="success") == reloads
    assert served_serial(node.nginx, fleet.domain, fleet.trust) == serial


@pytest.fixture
def report_target(
    control_plane: ControlPlane, tmp_path: Path
) -> Iterator[tuple[CertfleetInstall, str, Path]]:
    """A namespace for a ManagedCertificate the agents report to (no operator runs), and a
    kubeconfig with only the agent's rights. Removed afterwards: the control plane is shared,
    and a later operator would otherwise reconcile these resources too."""
    install = CertfleetInstall(control_plane, tmp_path / "certfleet")
    install.install_crds()
    namespace = f"agents-{secrets.token_hex(3)}"
    control_plane.kubectl("create", "namespace", namespace)
    control_plane.kubectl("apply", "-f", "-", stdin=agent_rbac(namespace))
    yield install, namespace, control_plane.kubeconfig_for(AGENT_USER)
    # The test bed runs no namespace controller: delete the resources themselves.
    control_plane.kubectl("delete", "mcert", "--all", "-n", namespace, "--timeout=30s")


def _apply_certificate(
    install: CertfleetInstall, namespace: str, name: str, domain: str, cloudhost: str
) -> None:
    resource = load_example("manual.yaml")
    resource["metadata"].update(name=name, namespace=namespace)
    resource["spec"].update(domain=domain, cloudhost=cloudhost, buildIdentifier=BUILD)
    resource["spec"]["manual"]["secretName"] = f"{name}-tls"
    install.apply(resource)


def fleet_nodes(install: CertfleetInstall, namespace: str, name: str) -> dict[str, Any]:
    status = install.managed_certificate(namespace, name).get("status", {})
    nodes: dict[str, Any] = status.get("fleet", {}).get("nodes", {})
    return nodes


@pytest.mark.parametrize(
    "case", ["flipped bytes", "key of another certificate", "expired", "rolled back"]
)
def test_every_agent_refuses_a_bad_revision_and_keeps_serving(
    fleet: Fleet,
    report_target: tuple[CertfleetInstall, str, Path],
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    install, namespace, kubeconfig = report_target
    _apply_certificate(install, namespace, "web", fleet.domain, "sandbox")
    reporting = (
        f"--certificate-namespace={namespace}",
        "--certificate-name=web",
        f"--kubeconfig={kubeconfig}",
    )
    earlier = None
    if case == "rolled back":
        fleet.datastore.publish(fleet.ca.leaf(fleet.domain, valid_from_days=-3))
        earlier = fleet.datastore.pointer_body()
    good = fleet.ca.leaf(fleet.domain, valid_from_days=-2)
    good_serial = fleet.datastore.publish(good)
    for name in ("node-a", "node-b", "node-c"):
        fleet.add(name, extra=reporting)
    fleet.wait_serving(good_serial)

    caplog.set_level(logging.WARNING, logger="certfleet.agent.loop")
    reason = {
        "flipped bytes": "DatastoreIntegrity",
        "key of another certificate": "KeyMismatch",
        "expired": "Expired",
        "rolled back": "RolledBack",
    }[case]
    if case == "flipped bytes":
        fleet.datastore.publish_with_flipped_bytes(fleet.ca.leaf(fleet.domain))
    elif case == "key of another certificate":
        fleet.datastore.publish(
            fleet.ca.leaf(fleet.domain), privkey=fleet.ca.leaf(fleet.domain).key
        )
    elif case == "expired":
        fleet.datastore.publish(
            fleet.ca.leaf(fleet.domain, valid_from_days=-100, valid_for_days=90)
        )
    else:
        assert earlier is not None
        fleet.datastore.put_pointer(earlier)

    def all_refused() -> bool:
        nodes = fleet_nodes(install, namespace, "web")
        return len(nodes) == 3 and all(entry.get("reason") == reason for entry in nodes.values())

    wait_for(lambda: f"status.fleet.nodes is {fleet_nodes(install, namespace, 'web')}", all_refused)
    nodes = fleet_nodes(install, namespace, "web")
    for node in fleet.nodes:
        entry = nodes[node.name]
        assert entry["servedSerial"] == good_serial
        assert entry["lastError"] and "PRIVATE KEY" not in entry["lastError"]
        assert served_serial(node.nginx, fleet.domain, fleet.trust) == good_serial
        assert node.installed_serial(fleet.domain) == good_serial
        assert node.metric("certfleet_agent_sync_errors_total", reason=reason) >= 1
    logged = [r for r in caplog.records if r.getMessage().startswith(f"{reason}:")]
    assert {r.threadName for r in logged} == {f"agent-{n.name}" for n in fleet.nodes}

    # A good revision after the bad one is installed everywhere.
    fixed = fleet.datastore.publish(fleet.ca.leaf(fleet.domain))
    fleet.wait_serving(fixed)
    wait_for(
        lambda: f"status.fleet.nodes is {fleet_nodes(install, namespace, 'web')}",
        lambda: all(
            e.get("reason") == "Installed" and "lastError" not in e
            for e in fleet_nodes(install, namespace, "web").values()
        ),
    )


def test_a_watch_hint_makes_a_slow_polling_agent_sync_at_once(
    fleet: Fleet, report_target: tuple[CertfleetInstall, str, Path]
) -> None:
    install, namespace, kubeconfig = report_target
    _apply_certificate(install, namespace, "web", fleet.domain, "sandbox")
    first = fleet.datastore.publish(fleet.ca.leaf(fleet.domain, valid_from_days=-2))
    reporting = (
        f"--certificate-namespace={namespace}",
        "--certificate-name=web",
        f"--kubeconfig={kubeconfig}",
        "--poll-interval=120",
    )
    node = fleet.add("node-a", extra=reporting, watch=True)
    fleet.wait_serving(first)  # the first sync is at start
    assert node.hint is not None
    wait_for("the watch never saw the ManagedCertificate", node.hint.ready.is_set)

    second = fleet.datastore.publish(fleet.ca.leaf(fleet.domain, valid_from_days=-1))
    # What the operator writes right after a publish (no operator runs here).
    status = {"status": {"serialNumber": second, "datastore": {"revision": 2}}}
    install.control_plane.kubectl(
        "patch",
        "mcert",
        "web",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(status),
    )
    took = fleet.wait_serving(second, timeout=10)
    print(f"watch hint: served {took:.2f} s after the status named the serial (interval 120 s)")
    assert node.hint.changes == 1


def test_agents_keep_serving_while_s3_is_down_and_sync_when_it_returns(
    fleet: Fleet, s3_server: S3Server
) -> None:
    serial = fleet.datastore.publish(fleet.ca.leaf(fleet.domain, valid_from_days=-2))
    nodes = [fleet.add("node-a"), fleet.add("node-b")]
    fleet.wait_serving(serial)
    try:
        s3_server.stop()
        wait_for(
            lambda: f"the outage went unnoticed: {fleet.describe()}",
            lambda: all(
                n.metric("certfleet_agent_sync_errors_total", reason="DatastoreUnavailable") >= 2
                for n in nodes
            ),
        )
        assert fleet.serving(serial), fleet.describe()
    finally:
        if s3_server.process is None or not s3_server.process.alive():
            s3_server.start()
    restarted = time.time()
    started = time.monotonic()
    polls_before = {n.name: _polls(n) for n in nodes}
    wait_for(
        "no successful sync after S3 returned",
        lambda: all(
            n.metric("certfleet_agent_last_successful_sync_timestamp_seconds") >= restarted
            for n in nodes
        ),
        interval=0.02,
    )
    took = time.monotonic() - started
    print(f"S3 back: every agent synced again {took:.2f} s later (poll interval {INTERVAL} s)")
    # Counted, not timed: the next poll succeeded (one more may have been in flight), so the
    # outage left no longer back-off behind.
    for n in nodes:
        polls = _polls(n) - polls_before[n.name]
        assert polls <= 2, f"{n.name} polled {polls} times before a successful sync"
    new = fleet.datastore.publish(fleet.ca.leaf(fleet.domain))
    fleet.wait_serving(new)


def test_a_broken_webserver_config_is_rolled_back_and_reported(fleet: Fleet) -> None:
    serial = fleet.datastore.publish(fleet.ca.leaf(fleet.domain, valid_from_days=-2))
    node = fleet.add("node-a")
    fleet.wait_serving(serial)

    broken = node.nginx.prefix / "broken.conf"
    broken.write_text("certfleet_broken_directive on;\n")
    with node.nginx.config_path.open("a") as config:
        config.write(f"include {broken};\n")
    new = fleet.datastore.publish(fleet.ca.leaf(fleet.domain))

    wait_for(
        lambda: f"the agent says {node.agent.last_result}",
        lambda: node.agent.last_result[0] == "ConfigTestFailed",
    )
    error = node.agent.last_result[1] or ""
    assert "previous files were restored" in error and "certfleet_broken_directive" in error
    assert served_serial(node.nginx, fleet.domain, fleet.trust) == serial
    assert node.installed_serial(fleet.domain) == serial
    assert node.metric("certfleet_agent_reloads_total", result="test_failed") >= 1
    assert node.metric("certfleet_agent_sync_errors_total", reason="ConfigTestFailed") >= 1

    # Repaired: the agent's retry installs the new certificate.
    node.nginx.write_config()
    fleet.wait_serving(new, timeout=10)


# -- with the real operator --------------------------------------------------------------


def test_the_operator_publishes_and_the_status_says_every_node_serves_it(
    control_plane: ControlPlane,
    s3_bucket: S3Bucket,
    start_acme_ca: Callable[..., AcmeCA],
    start_nginx: Callable[..., Nginx],
    tmp_path: Path,
    ca: ManualCA,
    trust: Path,
) -> None:
    install = CertfleetInstall(control_plane, tmp_path / "certfleet")
    install.install_crds()
    suffix = secrets.token_hex(3)
    cloudhost, namespace = f"host-{suffix}", f"fleet-{suffix}"
    datastore = _datastore(s3_bucket, tmp_path, cloudhost)
    domain = datastore.location.domain
    install.create_cloudhost(
        cloudhost, s3_bucket.endpoint, s3_bucket.name, datastore.master_key, ca.root_pem
    )
    control_plane.kubectl("create", "namespace", namespace)
    control_plane.kubectl("apply", "-f", "-", stdin=agent_rbac(namespace))
    install.start_operator(start_acme_ca())
    agents: list[ServerProcess] = []
    try:
        _apply_certificate(install, namespace, "shop", domain, cloudhost)
        kubeconfig = control_plane.kubeconfig_for(AGENT_USER)
        servers: list[Nginx] = []
        metrics_port = free_port()
        for index, name in enumerate(("node-a", "node-b", "node-c")):
            root = tmp_path / name / "ssl" / "live"
            nginx = start_nginx(certificate_dir=root / domain)
            servers.append(nginx)
            flags = agent_flags(
                name=name,
                server=nginx,
                root=root,
                endpoint=s3_bucket.endpoint,
                datastore=datastore,
                trust=trust,
                extra=(
                    f"--certificate-namespace={namespace}",
                    "--certificate-name=shop",
                    f"--kubeconfig={kubeconfig}",
                    f"--metrics-port={metrics_port if index == 0 else 0}",
                    "--metrics-address=127.0.0.1",
                ),
            )
            agents.append(
                ServerProcess(
                    f"agent-{name}",
                    [sys.executable, "-m", "certfleet.cli", "agent", *flags],
                    tmp_path / f"agent-{name}.log",
                    env={"PYTHONUNBUFFERED": "1"},
                )
            )

        def summary() -> str:
            status = install.managed_certificate(namespace, "shop").get("status", {})
            return str(status.get("fleet", {}).get("summary", ""))

        def logs() -> str:
            return "\n".join(f"{a.name}:\n{a.log_tail(8)}" for a in agents) + (
                f"\noperator:\n{install.operator.log_tail(15)}" if install.operator else ""
            )

        wait_for(
            lambda: f"summary {summary()!r}\n{logs()}",
            lambda: summary() == "no certificate is published yet; 3 nodes reported",
            timeout=30,
        )

        # A person supplies the certificate; the operator validates and publishes it.
        first = ca.leaf(domain, valid_from_days=-1, valid_for_days=11)
        first_serial = serial_of(first)
        started = time.monotonic()
        install.apply_secret(
            namespace,
            "shop-tls",
            {"tls.crt": first.fullchain, "tls.key": first.key},
            type_="kubernetes.io/tls",
        )
        wait_for(
            lambda: f"summary {summary()!r}\n{logs()}",
            lambda: summary() == f"3/3 nodes serve serial {first_serial}",
            timeout=30,
        )
        took = time.monotonic() - started
        print(f"operator publish: Secret applied to '3/3 nodes serve' in {took:.2f} s")
        wait_for(
            "a node does not serve the serial its agent reported",
            lambda: all(served_serial(nginx, domain, trust) == first_serial for nginx in servers),
            timeout=2,
        )
        scraped = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
        exposition = scraped.read().decode()
        assert (
            f'certfleet_agent_served_serial_info{{domain="{domain}",serial="{first_serial}"}} 1.0'
            in exposition
        )

        # Renewal of a MANUAL certificate: a new Secret, and a margin that makes the old one due
        # (10.5 days: more than the 10 it has left, less than its 11-day lifetime, for a margin
        # as long as the lifetime would be ignored).
        second = ca.leaf(domain, valid_from_days=-1, valid_for_days=90)
        second_serial = serial_of(second)
        install.apply_secret(
            namespace,
            "shop-tls",
            {"tls.crt": second.fullchain, "tls.key": second.key},
            type_="kubernetes.io/tls",
        )
        patch = json.dumps({"spec": {"renewBeforeSeconds": 907200}})
        control_plane.kubectl(
            "patch", "mcert", "shop", "-n", namespace, "--type=merge", "-p", patch
        )
        wait_for(
            lambda: f"summary {summary()!r}\n{logs()}",
            lambda: summary() == f"3/3 nodes serve serial {second_serial}",
            timeout=30,
        )
        wait_for(
            "a node does not serve the serial its agent reported",
            lambda: all(served_serial(nginx, domain, trust) == second_serial for nginx in servers),
            timeout=2,
        )
        assert http_ok(f"http://127.0.0.1:{metrics_port}/metrics")
        nodes = install.managed_certificate(namespace, "shop")["status"]["fleet"]["nodes"]
        assert sorted(nodes) == ["node-a", "node-b", "node-c"]
        assert all(entry["servedSerial"] == second_serial for entry in nodes.values())
    finally:
        for agent in agents:
            agent.stop()
        control_plane.kubectl(
            "delete", "mcert", "--all", "-n", namespace, "--timeout=30s", check=False
        )
        install.stop_operator()


# -- apache2 -----------------------------------------------------------------------------


def test_apache2_serves_the_new_certificate_after_a_graceful_reload(
    s3_bucket: S3Bucket,
    tmp_path: Path,
    ca: ManualCA,
    trust: Path,
    start_apache: Callable[..., Apache],
) -> None:
    datastore = _datastore(s3_bucket, tmp_path)
    domain = datastore.location.domain
    first = datastore.publish(ca.leaf(domain, valid_from_days=-2))
    root = tmp_path / "apache-node" / "ssl" / "live"

    def flags(server: LocalServer | None) -> list[str]:
        return agent_flags(
            name="apache-node",
            server=server,
            root=root,
            endpoint=s3_bucket.endpoint,
            datastore=datastore,
            trust=trust,
            kind="apache2",
        )

    init, _, _ = build(flags(None))
    assert init.sync_once().ok, "the init step did not install the certificate"

    apache = start_apache(root, [domain])

    def served() -> str:
        return served_serial_by_sni(apache.address, apache.https_port, domain, trust)

    agent, registry, _ = build(flags(apache))
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    try:
        wait_for(
            lambda: f"apache serves {served()}",
            lambda: served() == first,
        )
        second = datastore.publish(ca.leaf(domain, valid_from_days=-1))
        wait_for(
            lambda: f"apache serves {served()}; the agent says {agent.last_result}",
            lambda: served() == second,
        )
        wait_for(
            "the agent did not count its graceful reload",
            lambda: (
                registry.get_sample_value("certfleet_agent_reloads_total", {"result": "success"})
                == 1
            ),
        )
    finally:
        agent.stop()
        thread.join(timeout=20)


def test_a_webserver_that_serves_other_files_is_reloaded_a_few_times_then_reported(
    fleet: Fleet,
) -> None:
    """nginx's configuration names other files for the name (a stale copy): no reload makes
    the installed leaf served. A few reloads, then NotServed and no more reloads; a new
    revision is tried again."""
    stale_pair = fleet.ca.leaf(fleet.domain, valid_from_days=-3)
    stale = fleet.tmp_path / "stale-copy"
    stale.mkdir()
    (stale / "fullchain.pem").write_bytes(stale_pair.fullchain)
    (stale / "privkey.pem").write_bytes(stale_pair.key)
    stale_serial = certificate_facts(stale_pair.certificate).serial
    fleet.datastore.publish(fleet.ca.leaf(fleet.domain, valid_from_days=-1))

    root = fleet.tmp_path / "node-x" / "ssl" / "live"
    nginx = fleet.start_nginx(certificate_dir=stale)
    flags = agent_flags(
        name="node-x",
        server=nginx,
        root=root,
        endpoint=fleet.endpoint,
        datastore=fleet.datastore,
        trust=fleet.trust,
        extra=("--probe-timeout=1",),
    )
    agent, registry, _ = build(flags)
    node = Node("node-x", nginx, agent, registry, root)
    node.thread = threading.Thread(target=agent.run, name="agent-node-x", daemon=True)
    node.thread.start()
    fleet.nodes.append(node)

    def not_served_errors() -> float:
        return node.metric("certfleet_agent_sync_errors_total", reason="NotServed")

    wait_for(lambda: f"agent says {agent.last_result}", lambda: not_served_errors() >= 1, 60)
    reloads = node.metric("certfleet_agent_reloads_total", result="success")
    assert reloads == 1 + MAX_RELOADS_FOR_UNSERVED  # the install's own, then the bounded ones
    reason, message = agent.last_result
    assert reason == "NotServed" and message is not None and stale_serial in message
    assert served_serial(nginx, fleet.domain, fleet.trust) == stale_serial
    # More syncs come and go (each after the back-off), none reloads.
    wait_for(lambda: f"agent says {agent.last_result}", lambda: not_served_errors() >= 3, 30)
    assert node.metric("certfleet_agent_reloads_total", result="success") == reloads

    # Something changes: a new revision is installed and reloaded again.
    fleet.datastore.publish(fleet.ca.leaf(fleet.domain))
    wait_for(
        lambda: f"agent says {agent.last_result}",
        lambda: node.metric("certfleet_agent_reloads_total", result="success") > reloads,
        30,
    )


class PairSampler(threading.Thread):
    """Every 10 ms: the pair installed at <root>/<domain> is whole (the key is the
    certificate's). Records what is not."""

    def __init__(self, installer: CertificateInstaller) -> None:
        super().__init__(daemon=True)
        self.installer = installer
        self.broken: list[str] = []
        self.samples = 0
        self.stop = threading.Event()

    def run(self) -> None:
        spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        while not self.stop.is_set():
            try:
                files = self.installer.read_installed()
                assert files is not None, "nothing installed"
                leaf = x509.load_pem_x509_certificate(files.fullchain)
                key = serialization.load_pem_private_key(files.privkey, password=None)
                if leaf.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
                    self.broken.append(f"a mismatched pair at {files.version}")
                self.samples += 1
            except Exception as error:  # any unreadable state is what this looks for
                self.broken.append(f"{type(error).__name__}: {error}")
            self.stop.wait(0.01)

    def finish(self) -> None:
        self.stop.set()
        self.join(timeout=5)


@pytest.mark.reliability
def test_an_agent_sigkilled_mid_install_never_leaves_a_half_installed_pair(
    fleet: Fleet, tmp_path: Path
) -> None:
    """The agent as its own process, SIGKILLed at seeded random moments of installing new
    revisions (some right as a new version folder appears): the pair at <root>/<domain> is
    always one whole pair, nginx's config test always passes, and the restarted agent installs
    and serves the newest revision without a person."""
    seed = int(os.environ.get("CERTFLEET_RELIABILITY_SEED") or secrets.randbits(32))
    rng = random.Random(seed)
    domain = fleet.domain
    first = fleet.datastore.publish(fleet.ca.leaf(domain, valid_from_days=-2))
    node = fleet.add("node-k", init_step=True)  # the init step, nginx; its agent thread...
    node.agent.stop()  # ... gives way to the agent as a process, which is what gets killed
    assert node.thread is not None
    node.thread.join(timeout=20)
    fleet.nodes.remove(node)
    flags = agent_flags(
        name="node-k",
        server=node.nginx,
        root=node.root,
        endpoint=fleet.endpoint,
        datastore=fleet.datastore,
        trust=fleet.trust,
    )
    installer = CertificateInstaller(node.root, domain)
    sampler = PairSampler(installer)
    sampler.start()
    kills: list[tuple[str, float]] = []
    agent: ServerProcess | None = None
    try:
        for index in range(12):
            agent = ServerProcess(
                f"agent-k{index}",
                [sys.executable, "-m", "certfleet.cli", "agent", *flags],
                tmp_path / f"agent-k{index}.log",
            )
            versions = set(installer.versions())
            # Newer each time: a later notBefore (the agent refuses a downgrade).
            fleet.datastore.publish(fleet.ca.leaf(domain, valid_from_days=-1 + index / 1000))
            moment = rng.choice(("timing", "version-folder"))
            if moment == "version-folder":

                def new_version(versions: set[str] = versions) -> set[str]:
                    return set(installer.versions()) - versions

                wait_for("a new version folder", new_version, timeout=30, interval=0.002)
                delay = rng.uniform(0, 0.05)
            else:
                delay = rng.uniform(0, 2.0)
            time.sleep(delay)  # the kill moment itself, drawn at random
            agent.kill()
            kills.append((moment, round(delay, 3)))
            check = subprocess.run(node.nginx.test_command, capture_output=True, timeout=30)
            assert check.returncode == 0, check.stderr.decode()
        last = fleet.datastore.publish(fleet.ca.leaf(domain, valid_from_days=-0.5))
        agent = ServerProcess(
            "agent-k-last",
            [sys.executable, "-m", "certfleet.cli", "agent", *flags],
            tmp_path / "agent-k-last.log",
        )
        wait_for(
            lambda: f"serial {last} served: {served_serial(node.nginx, domain, fleet.trust)}",
            lambda: served_serial(node.nginx, domain, fleet.trust) == last,
            timeout=60,
            interval=0.05,
        )
    finally:
        sampler.finish()
        if agent is not None:
            agent.stop()
    print(f"agent SIGKILLs (seed {seed}): {kills}; first serial {first}, served {last}")
    assert not sampler.broken, sampler.broken[:5]
    assert sampler.samples > 0


@pytest.mark.reliability
def test_s3_going_away_mid_sync_leaves_a_whole_pair_and_the_next_sync_installs(
    fleet: Fleet, s3_server: S3Server
) -> None:
    """versitygw stops at seeded random moments right after a new revision is published,
    while the agent fetches it: the installed pair stays whole and served, and once S3 is
    back the agent installs the newest revision by itself."""
    seed = int(os.environ.get("CERTFLEET_RELIABILITY_SEED") or secrets.randbits(32))
    rng = random.Random(seed)
    domain = fleet.domain
    first = fleet.datastore.publish(fleet.ca.leaf(domain, valid_from_days=-2))
    node = fleet.add("node-s3", init_step=True)
    fleet.wait_serving(first)
    sampler = PairSampler(CertificateInstaller(node.root, domain))
    sampler.start()
    moments: list[float] = []
    try:
        for index in range(5):
            serial = fleet.datastore.publish(
                fleet.ca.leaf(domain, valid_from_days=-1 + index / 1000)
            )
            delay = rng.uniform(0, 2 * INTERVAL)
            time.sleep(delay)  # the outage's moment, drawn at random within a poll or two
            try:
                s3_server.stop()
                moments.append(round(delay, 3))
                served = served_serial(node.nginx, domain, fleet.trust)
                assert not served.startswith("<no verified handshake"), served
            finally:
                if s3_server.process is None or not s3_server.process.alive():
                    s3_server.start()
            fleet.wait_serving(serial, timeout=30)
    finally:
        sampler.finish()
    print(f"S3 stopped mid-sync (seed {seed}) after {moments} s; served {serial} after each")
    assert not sampler.broken, sampler.broken[:5]
