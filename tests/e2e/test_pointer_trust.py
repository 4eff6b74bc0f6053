"""The datastore's integrity end to end: real versitygw S3, real nginx, the real agent (built
from its flags as `certfleet agent` builds it), and the real operator on the control plane.

Agents follow only a pointer that is authenticated (HMAC under a key derived from the master
key, over the whole document and its location) and not below the highest revision they have
accepted. Each bad pointer or revision below is refused with its own reason, and nothing is
installed: every node keeps serving what it served. The operator replaces such a pointer
(from its cache, above the highest revision it has published), and a master-key rotation runs
on a live fleet without a node ever serving anything else than the newest certificate.

Part of the bad-input corpus of issue 11: the eight pointer and revision cases of
`test_every_node_refuses_an_untrusted_pointer` (and a fresh node refuses them too).
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from certfleet.agent.installer import CertificateInstaller
from certfleet.agent.loop import Agent
from certfleet.core.facts import certificate_facts
from certfleet.datastore.encryption import MasterKey
from certfleet.datastore.errors import DatastoreIntegrityError
from certfleet.datastore.location import DatastoreLocation
from certfleet.datastore.s3_store import S3Datastore
from e2e.certificates import ManualCA, Pair
from e2e.test_agent import (
    Datastore,
    _apply_certificate,
    _datastore,
    agent_flags,
    build,
    ca,
    serial_of,
    served_serial,
    trust,
)
from e2e.test_agent import Fleet as AgentFleet
from testbed.acme_ca import AcmeCA
from testbed.certfleet_install import OPERATOR_NAMESPACE, CertfleetInstall
from testbed.control_plane import ControlPlane
from testbed.s3 import S3Bucket
from testbed.waiting import wait_for
from testbed.webserver import Nginx

pytestmark = pytest.mark.testbed

__all__ = ["ca", "trust"]  # fixtures shared with test_agent.py

# The pointer and revision cases, and the reason each node gives.
UNTRUSTED = {
    "rolled back": "RolledBack",
    "format 1 (unauthenticated)": "PointerUnauthenticated",
    "tag stripped": "PointerUnauthenticated",
    "bad tag": "PointerForged",
    "another location's pointer": "PointerMisplaced",
    "another location's revision": "DatastoreIntegrity",
    "unknown key id": "UnknownMasterKey",
    "revision under an unknown key": "UnknownMasterKey",
}


@pytest.fixture
def nodes(
    s3_bucket: S3Bucket,
    start_nginx: Callable[..., Nginx],
    tmp_path: Path,
    ca: ManualCA,
    trust: Path,
) -> Iterator[AgentFleet]:
    found = AgentFleet(
        tmp_path, start_nginx, _datastore(s3_bucket, tmp_path), s3_bucket.endpoint, trust, ca
    )
    try:
        yield found
    finally:
        found.stop()


def pointer_body(datastore: Datastore, location: DatastoreLocation | None = None) -> bytes:
    location = location or datastore.location
    client = datastore.bucket.endpoint.client()
    body: bytes = client.get_object(Bucket=datastore.bucket.name, Key=location.pointer_key)[
        "Body"
    ].read()
    return body


def put(datastore: Datastore, key: str, body: bytes) -> None:
    datastore.bucket.endpoint.client().put_object(Bucket=datastore.bucket.name, Key=key, Body=body)


def tamper(nodes: AgentFleet, case: str, older_pointer: bytes) -> None:
    """Do to the datastore what an attacker with write access to the bucket (or a key holder,
    for the last case) would do; the nodes have installed revision 2."""
    datastore, location = nodes.datastore, nodes.datastore.location
    key = MasterKey(datastore.master_key)
    current = datastore.store.read_current(location)
    assert current is not None
    pointer = current.pointer
    document = json.loads(pointer_body(datastore))
    other = dataclasses.replace(location, build_identifier="build-other")
    if case == "rolled back":
        put(datastore, location.pointer_key, older_pointer)  # authentic, but revision 1
    elif case == "format 1 (unauthenticated)":
        for name in ("mac", "key_id", "location"):
            del document[name]
        document.update(format_version=1, revision=pointer.revision + 1)
        put(datastore, location.pointer_key, json.dumps(document).encode())
    elif case == "tag stripped":
        del document["mac"]
        document["revision"] = pointer.revision + 1
        put(datastore, location.pointer_key, json.dumps(document).encode())
    elif case == "bad tag":
        document["revision"] = pointer.revision + 1  # the tag no longer covers this
        put(datastore, location.pointer_key, json.dumps(document).encode())
    elif case in ("another location's pointer", "another location's revision"):
        # The same fleet's own, authentic certificate for another build.
        theirs = Datastore(datastore.bucket, other, datastore.master_key, datastore.directory)
        theirs.publish(nodes.ca.leaf(location.domain, valid_from_days=-1))
        client = datastore.bucket.endpoint.client()
        target = pointer.revision + 1 if case == "another location's pointer" else pointer.revision
        for name in ("fullchain.pem", "privkey.pem.enc"):
            client.copy_object(
                Bucket=datastore.bucket.name,
                Key=f"{location.revision_prefix(target)}{name}",
                CopySource={
                    "Bucket": datastore.bucket.name,
                    "Key": f"{other.revision_prefix(1)}{name}",
                },
            )
        if case == "another location's pointer":
            put(datastore, location.pointer_key, pointer_body(datastore, other))
    elif case == "unknown key id":
        stranger = MasterKey(os.urandom(32))
        forged = dataclasses.replace(pointer, revision=pointer.revision + 1)
        forged = dataclasses.replace(forged, key_id=stranger.key_id_hex)
        put(datastore, location.pointer_key, forged.to_json(location, stranger))
    else:
        assert case == "revision under an unknown key"
        # A writer with another master key publishes; the pointer is then re-sealed with the
        # fleet's key, so only the revision's key is a stranger's.
        stranger = MasterKey(os.urandom(32))
        client = datastore.bucket.endpoint.client()
        pair = nodes.ca.leaf(location.domain, valid_from_days=-1)
        facts = certificate_facts(pair.certificate)
        foreign = S3Datastore(client, [stranger, key])
        published = foreign.publish(
            location,
            pair.fullchain,
            pair.key,
            facts.serial,
            facts.not_before,
            facts.not_after,
            current.pointer_etag,
        )
        resealed = dataclasses.replace(published, key_id=key.key_id_hex)
        put(datastore, location.pointer_key, resealed.to_json(location, key))


def reasons(nodes: AgentFleet) -> list[str | None]:
    return [node.agent.last_result[0] for node in nodes.nodes]


@pytest.mark.parametrize("case", list(UNTRUSTED))
def test_every_node_refuses_an_untrusted_pointer(nodes: AgentFleet, case: str) -> None:
    reason = UNTRUSTED[case]
    first = nodes.ca.leaf(nodes.domain, valid_from_days=-3)
    nodes.datastore.publish(first)
    older_pointer = pointer_body(nodes.datastore)
    second = nodes.ca.leaf(nodes.domain, valid_from_days=-2)
    second_serial = nodes.datastore.publish(second)
    for name in ("node-a", "node-b"):
        nodes.add(name)
    nodes.wait_serving(second_serial)
    # nginx serves the new leaf a moment before the agent records its handshake's verdict.
    wait_for(
        lambda: f"the nodes' reasons are {reasons(nodes)}",
        lambda: set(reasons(nodes)) <= {"Installed", "UpToDate"},
        timeout=15,
    )
    versions = {
        node.name: CertificateInstaller(node.root, nodes.domain).versions() for node in nodes.nodes
    }

    tamper(nodes, case, older_pointer)
    if case == "another location's revision":
        # The pointer did not move: the nodes, which hold revision 2's files, have nothing to
        # fetch; a node that has to fetch them refuses (below).
        expected_here = {"Installed", "UpToDate"}
    else:
        expected_here = {reason}
        wait_for(
            lambda: f"the nodes' reasons are {reasons(nodes)}, not {reason}",
            lambda: set(reasons(nodes)) == {reason},
            timeout=15,
        )
    for node in nodes.nodes:
        assert node.agent.last_result[0] in expected_here
        assert served_serial(node.nginx, nodes.domain, nodes.trust) == second_serial
        assert node.installed_serial(nodes.domain) == second_serial
        assert CertificateInstaller(node.root, nodes.domain).versions() == versions[node.name], (
            "something was installed"
        )
        if expected_here == {reason}:
            assert node.metric("certfleet_agent_sync_errors_total", reason=reason) >= 1

    # A node that starts now (the init step, or the next cron run of a restarted node) refuses
    # too. For a rollback that is the restarted node-a (it remembers revision 2); a node that
    # never saw this location takes the first authentic pointer (trust on first use).
    fresh_root = (
        nodes.nodes[0].root if case == "rolled back" else nodes.tmp_path / "fresh" / "ssl" / "live"
    )
    flags = agent_flags(
        name="fresh",
        server=None,
        root=fresh_root,
        endpoint=nodes.endpoint,
        datastore=nodes.datastore,
        trust=nodes.trust,
    )
    once, _, _ = build(flags)
    result = once.sync_once()
    assert (result.ok, result.reason) == (False, reason), result
    if case == "rolled back":
        assert nodes.nodes[0].installed_serial(nodes.domain) == second_serial
    else:
        assert CertificateInstaller(fresh_root, nodes.domain).read_installed() is None


# -- the operator --------------------------------------------------------------------------


class OperatorFleet:
    """The operator over a CloudHost whose master keys the test chooses, a MANUAL certificate,
    and nodes (nginx + an agent thread each) whose key files can be changed by a restart."""

    def __init__(
        self,
        control_plane: ControlPlane,
        s3_bucket: S3Bucket,
        start_nginx: Callable[..., Nginx],
        tmp_path: Path,
        ca: ManualCA,
        trust: Path,
    ) -> None:
        self.control_plane = control_plane
        self.tmp_path = tmp_path
        self.ca = ca
        self.trust = trust
        self.install = CertfleetInstall(control_plane, tmp_path / "certfleet")
        self.install.install_crds()
        suffix = secrets.token_hex(3)
        self.cloudhost, self.namespace = f"host-{suffix}", f"trust-{suffix}"
        self.datastore = _datastore(s3_bucket, tmp_path, self.cloudhost)
        self.bucket = s3_bucket
        self.install.create_cloudhost(
            self.cloudhost,
            s3_bucket.endpoint,
            s3_bucket.name,
            self.datastore.master_key,
            trust_bundle=ca.root_pem,  # the test CA of the MANUAL certificate
        )
        control_plane.kubectl("create", "namespace", self.namespace)
        self.start_nginx = start_nginx
        self.servers: dict[str, Nginx] = {}
        self.agents: dict[str, tuple[Agent, threading.Thread]] = {}
        self.renew_before = 604800  # the default 7 days: no certificate here is due

    @property
    def domain(self) -> str:
        return self.datastore.location.domain

    @property
    def location(self) -> DatastoreLocation:
        return self.datastore.location

    def key_file(self, name: str, key: bytes) -> Path:
        path = self.tmp_path / "keys" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(key)
        path.chmod(0o600)
        return path

    def start_node(self, name: str, key_files: list[Path]) -> None:
        """An agent for `name` (its nginx started the first time), reading `key_files`."""
        self.stop_node(name)
        root = self.tmp_path / name / "ssl" / "live"
        if name not in self.servers:
            self.servers[name] = self.start_nginx(certificate_dir=root / self.domain)
        flags = agent_flags(
            name=name,
            server=self.servers[name],
            root=root,
            endpoint=self.bucket.endpoint,
            datastore=self.datastore,
            trust=self.trust,
        )
        flags = [flag for flag in flags if not flag.startswith("--master-key-file=")]
        flags += [f"--master-key-file={path}" for path in key_files]
        agent, _, _ = build(flags)
        thread = threading.Thread(target=agent.run, name=f"agent-{name}", daemon=True)
        thread.start()
        self.agents[name] = (agent, thread)

    def stop_node(self, name: str) -> None:
        if name in self.agents:
            agent, thread = self.agents.pop(name)
            agent.stop()
            thread.join(timeout=20)
            assert not thread.is_alive(), f"agent {name} did not stop"

    def stop(self) -> None:
        for name in list(self.agents):
            self.stop_node(name)
        self.control_plane.kubectl(
            "delete", "mcert", "--all", "-n", self.namespace, "--timeout=30s", check=False
        )
        self.install.stop_operator()

    def reason(self, name: str) -> str | None:
        return self.agents[name][0].last_result[0]

    def serving(self, serial: str) -> bool:
        return all(
            served_serial(server, self.domain, self.trust) == serial
            for server in self.servers.values()
        )

    def describe(self) -> str:
        nodes = "; ".join(
            f"{name} serves {served_serial(server, self.domain, self.trust)}, agent says "
            f"{self.agents[name][0].last_result if name in self.agents else 'stopped'}"
            for name, server in self.servers.items()
        )
        log = self.install.operator.log_tail(15) if self.install.operator else ""
        return f"{nodes}\noperator:\n{log}"

    def wait_serving(self, serial: str) -> None:
        wait_for(lambda: f"serial {serial}: {self.describe()}", lambda: self.serving(serial), 30)

    def supply(self, pair: Pair, *, replacing: bool = True) -> str:
        """A person's certificate; `replacing` one published before: with a margin that makes
        that one (11 days, 10 left) due, and not this one (90 days)."""
        self.install.apply_secret(
            self.namespace,
            "shop-tls",
            {"tls.crt": pair.fullchain, "tls.key": pair.key},
            type_="kubernetes.io/tls",
        )
        if replacing:
            self.renew_before = max(self.renew_before, 907200)  # 10.5 days
            self.touch()
        return serial_of(pair)

    def touch(self) -> None:
        """A spec change, so the operator reconciles now (not at its hourly recheck)."""
        self.renew_before += 1
        patch = json.dumps({"spec": {"renewBeforeSeconds": self.renew_before}})
        self.control_plane.kubectl(
            "patch", "mcert", "shop", "-n", self.namespace, "--type=merge", "-p", patch
        )

    def status(self) -> dict[str, Any]:
        found: dict[str, Any] = self.install.managed_certificate(self.namespace, "shop").get(
            "status", {}
        )
        return found

    def store(self, *keys: bytes) -> S3Datastore:
        return S3Datastore(self.bucket.endpoint.client(), [MasterKey(key) for key in keys])

    def wait_revision(self, revision: int, *keys: bytes) -> None:
        def published() -> bool:
            try:
                current = self.store(*keys).read_current(self.location)
            except DatastoreIntegrityError:  # the pointer not replaced yet
                return False
            return current is not None and current.pointer.revision == revision

        wait_for(lambda: f"revision {revision}: {self.describe()}", published, timeout=30)

    def events(self) -> list[str]:
        found = self.control_plane.kubectl(
            "get", "events", "-n", self.namespace, "-o", "json"
        ).stdout
        return [item.get("reason", "") for item in json.loads(found).get("items", [])]

    def set_keys(self, current: str, previous: list[str]) -> None:
        patch = {
            "spec": {
                "encryptionKeySecretRef": {"namespace": OPERATOR_NAMESPACE, "name": current},
                "previousEncryptionKeySecretRefs": [
                    {"namespace": OPERATOR_NAMESPACE, "name": name} for name in previous
                ],
            }
        }
        self.control_plane.kubectl(
            "patch", "cloudhost", self.cloudhost, "--type=merge", "-p", json.dumps(patch)
        )


@pytest.fixture
def operator_fleet(
    control_plane: ControlPlane,
    s3_bucket: S3Bucket,
    start_nginx: Callable[..., Nginx],
    start_acme_ca: Callable[..., AcmeCA],
    tmp_path: Path,
    ca: ManualCA,
    trust: Path,
) -> Iterator[OperatorFleet]:
    fleet = OperatorFleet(control_plane, s3_bucket, start_nginx, tmp_path, ca, trust)
    try:
        fleet.install.start_operator(start_acme_ca())
        _apply_certificate(fleet.install, fleet.namespace, "shop", fleet.domain, fleet.cloudhost)
        yield fleet
    finally:
        fleet.stop()


def test_the_operator_replaces_a_rolled_back_or_unauthenticated_pointer_above_the_highest(
    operator_fleet: OperatorFleet,
) -> None:
    fleet, key = operator_fleet, operator_fleet.datastore.master_key
    key_file = fleet.key_file("current", key)
    first = fleet.supply(
        fleet.ca.leaf(fleet.domain, valid_from_days=-1, valid_for_days=11), replacing=False
    )
    fleet.wait_revision(1, key)
    old_pointer = pointer_body(fleet.datastore)
    second = fleet.supply(fleet.ca.leaf(fleet.domain, valid_from_days=-1, valid_for_days=90))
    fleet.wait_revision(2, key)
    fleet.start_node("node-a", [key_file])
    fleet.wait_serving(second)
    assert first != second
    installer = CertificateInstaller(fleet.tmp_path / "node-a" / "ssl" / "live", fleet.domain)
    versions = installer.versions()

    # Revision 1 (authentic, the older certificate) put back over revision 2.
    put(fleet.datastore, fleet.location.pointer_key, old_pointer)
    wait_for(fleet.describe, lambda: fleet.reason("node-a") == "RolledBack", timeout=15)
    fleet.touch()
    fleet.wait_revision(3, key)  # the operator published over it, above revision 2
    current = fleet.store(key).read_current(fleet.location)
    assert current is not None and current.pointer.serial == second, "the rolled-back one"
    wait_for(fleet.describe, lambda: "RolledBack" in fleet.events(), timeout=15)
    assert fleet.status()["datastore"]["revision"] == 3
    wait_for(fleet.describe, lambda: fleet.reason("node-a") == "UpToDate", timeout=15)
    assert fleet.serving(second)

    # The tag stripped: replaced too, with its own reason.
    document = json.loads(pointer_body(fleet.datastore))
    del document["mac"]
    put(fleet.datastore, fleet.location.pointer_key, json.dumps(document).encode())
    wait_for(fleet.describe, lambda: fleet.reason("node-a") == "PointerUnauthenticated", timeout=15)
    fleet.touch()
    fleet.wait_revision(4, key)
    wait_for(fleet.describe, lambda: "PointerUnauthenticated" in fleet.events(), timeout=15)
    wait_for(fleet.describe, lambda: fleet.reason("node-a") == "UpToDate", timeout=15)
    assert fleet.serving(second)
    assert installer.versions() == versions, "the node installed something it was not to"


def test_a_master_key_rotation_with_a_live_fleet(operator_fleet: OperatorFleet) -> None:
    fleet = operator_fleet
    key_a, key_b = fleet.datastore.master_key, secrets.token_bytes(32)
    id_a, id_b = MasterKey(key_a).key_id_hex, MasterKey(key_b).key_id_hex
    file_a, file_b = fleet.key_file("a", key_a), fleet.key_file("b", key_b)
    name_a = f"{fleet.cloudhost}-encryption-key"
    name_b = f"{fleet.cloudhost}-encryption-key-b"

    # 1. Published under key A; two nodes with key A serve it.
    first = fleet.supply(
        fleet.ca.leaf(fleet.domain, valid_from_days=-1, valid_for_days=11), replacing=False
    )
    fleet.wait_revision(1, key_a)
    sealed = fleet.store(key_a).read_current(fleet.location)
    assert sealed is not None and sealed.pointer.key_id == id_a
    for name in ("node-a", "node-b"):
        fleet.start_node(name, [file_a])
    fleet.wait_serving(first)

    # 2. Key B goes to the agents first (a rollout of the DaemonSet: both key files).
    for name in ("node-a", "node-b"):
        fleet.start_node(name, [file_b, file_a])
    # 3. The CloudHost names B, with A as previous; the operator seals the certificate again
    #    under B. The nodes keep serving the same certificate throughout (no reload needed).
    fleet.install.apply_secret(OPERATOR_NAMESPACE, name_b, {"key": key_b})
    fleet.set_keys(name_b, [name_a])
    fleet.touch()
    fleet.wait_revision(2, key_b, key_a)
    resealed = fleet.store(key_b).read_current(fleet.location)
    assert resealed is not None and resealed.pointer.key_id == id_b
    assert resealed.sealed_with_current_key and resealed.pointer.serial == first
    client = fleet.bucket.endpoint.client()
    head = client.head_object(Bucket=fleet.bucket.name, Key=fleet.location.privkey_key(2))
    assert head["Metadata"]["certfleet-master-key-id"] == id_b
    fleet.install.wait_for_condition(fleet.namespace, "shop", "True", "Resealed")
    wait_for(
        fleet.describe,
        lambda: all(fleet.reason(name) == "UpToDate" for name in fleet.agents),
        timeout=15,
    )
    assert fleet.serving(first)

    # 4. The next certificate is published under B and installed everywhere.
    second = fleet.supply(fleet.ca.leaf(fleet.domain, valid_from_days=-1, valid_for_days=90))
    fleet.wait_revision(3, key_b)
    fleet.wait_serving(second)
    # A node that was never given key B cannot read it: it says so and keeps serving.
    fleet.start_node("node-a", [file_a])
    wait_for(fleet.describe, lambda: fleet.reason("node-a") == "UnknownMasterKey", timeout=15)
    assert fleet.serving(second)

    # 5. Key A retired: from the CloudHost, its Secret and the agents. Nothing depends on it.
    fleet.set_keys(name_b, [])
    fleet.control_plane.kubectl("delete", "secret", name_a, "-n", OPERATOR_NAMESPACE)
    for name in ("node-a", "node-b"):
        fleet.start_node(name, [file_b])
    fleet.touch()
    fleet.install.wait_for_condition(fleet.namespace, "shop", "True", "Reused")
    wait_for(
        fleet.describe,
        lambda: all(fleet.reason(name) == "UpToDate" for name in fleet.agents),
        timeout=15,
    )
    assert fleet.serving(second)
    assert fleet.status()["datastore"]["revision"] == 3
