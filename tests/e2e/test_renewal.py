"""Renewal for years, compressed into seconds on the test bed: pebble issues short-lived
certificates, the operator renews them by itself, agents install every renewal, and clients
never see a failed handshake; the user's renewBeforeSeconds sets the renewal time, and the
status says which rule applied. Also: one ACME order per renewal with two operator replicas, and
a failing CA that is retried with back-off while the old certificate stays in use."""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import shlex
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from acme import messages
from acme.client import ClientNetwork, ClientV2
from cryptography import x509
from kubernetes import client, config, watch

from certfleet.acme_issuer.accounts import account_key_from_json
from certfleet.api.names import (
    ACCOUNT_DIRECTORY_ANNOTATION,
    ACCOUNT_KEY,
    ACCOUNT_LABEL,
    ACCOUNT_URL_ANNOTATION,
    GROUP,
    MANAGED_CERTIFICATES,
    VERSION,
)
from certfleet.api.names import RENEW_NOW_ANNOTATION as RENEW_NOW
from e2e.fleet import Fleet, new_domain
from testbed.certfleet_install import OPERATOR_NAMESPACE
from testbed.metrics import metric_value
from testbed.processes import ServerProcess, free_port
from testbed.waiting import wait_for
from testbed.webserver import Nginx

pytestmark = pytest.mark.testbed

POLL = 0.5  # the agents' poll interval


def published_revision(fleet: Fleet, domain: str) -> int:
    stored = fleet.stored(domain)
    return stored.pointer.revision if stored else 0


def start_node(
    fleet: Fleet,
    domain: str,
    index: int,
    roots: Path,
    start_nginx: Callable[..., Nginx],
    workdir: Path,
) -> tuple[Nginx, ServerProcess]:
    """A webserver node as a fresh one starts: the agent's init step installs the current
    certificate, then nginx starts, then the agent keeps it current."""
    secrets_dir = workdir / f"node-{index}-secrets"
    secrets_dir.mkdir(parents=True)
    endpoint = fleet.bucket.endpoint
    for name, value in (
        ("master.key", fleet.master_key),
        ("accessKeyID", endpoint.access_key.encode()),
        ("secretAccessKey", endpoint.secret_key.encode()),
    ):
        (secrets_dir / name).write_bytes(value)
    root = workdir / f"node-{index}-live"
    location = fleet.location(domain)
    flags = [
        f"--s3-endpoint={endpoint.url}",
        f"--s3-region={endpoint.region}",
        f"--s3-bucket={location.bucket}",
        f"--s3-prefix={location.prefix}",
        f"--access-key-id-file={secrets_dir / 'accessKeyID'}",
        f"--secret-access-key-file={secrets_dir / 'secretAccessKey'}",
        f"--master-key-file={secrets_dir / 'master.key'}",
        f"--cloudhost={location.cloudhost}",
        f"--build-identifier={location.build_identifier}",
        f"--domain={domain}",
        f"--cert-root={root}",
        f"--trust-bundle={roots}",  # pebble's root, as the CloudHost's trust bundle
        f"--node-name=node-{index}",
        f"--poll-interval={POLL}",
        "--max-backoff=2",
        "--metrics-port=0",
    ]
    agent = [sys.executable, "-m", "certfleet.cli", "agent"]
    init = subprocess.run(
        [*agent, *flags, "--once", "--no-reload"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert init.returncode == 0, init.stderr
    nginx = start_nginx(certificate_dir=root / domain)
    loop = ServerProcess(
        f"agent-{index}",
        [
            *agent,
            *flags,
            "--webserver=nginx",
            f"--test-command={shlex.join(nginx.test_command)}",
            f"--reload-command={shlex.join(nginx.reload_command)}",
            f"--probe-address={nginx.address}:{nginx.https_port}",
            f"--probe-ca-file={roots}",
        ],
        workdir / f"node-{index}-agent.log",
    )
    return nginx, loop


class Client(threading.Thread):
    """Handshakes with every node, over and over, as browsers would: verifying the chain,
    the name and the validity period. Records every failure and every serial seen."""

    def __init__(self, nodes: list[Nginx], domain: str, roots: Path) -> None:
        super().__init__(daemon=True)
        self.nodes, self.domain = nodes, domain
        self.context = ssl.create_default_context(cafile=str(roots))
        self.failures: list[str] = []
        self.serials: list[set[int]] = [set() for _ in nodes]
        self.handshakes = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for index, node in enumerate(self.nodes):
                try:
                    with (
                        socket.create_connection((node.address, node.https_port), timeout=5) as raw,
                        self.context.wrap_socket(raw, server_hostname=self.domain) as tls,
                    ):
                        der = tls.getpeercert(binary_form=True)
                    assert der is not None
                    self.serials[index].add(x509.load_der_x509_certificate(der).serial_number)
                    self.handshakes += 1
                except (OSError, ssl.SSLError) as error:
                    self.failures.append(f"node {index} at {time.time():.2f}: {error}")
            self.stop.wait(0.05)


def test_certificates_renew_by_themselves_and_clients_never_fail(
    start_fleet: Callable[..., Fleet], start_nginx: Callable[..., Nginx], tmp_path: Path
) -> None:
    # 15-second certificates: renewBeforeSeconds 60 (the CRD's least) is not shorter than their
    # life, so they renew at 2/3 of it, every 10 s, by themselves.
    fleet = start_fleet(acme={"certificate_validity_seconds": 15})
    domain = new_domain()
    fleet.apply_certificate("automatic.yaml", "web", domain, renewBeforeSeconds=60)
    first = fleet.install.wait_for_condition(fleet.namespace, "web", "True")["status"]
    roots = tmp_path / "pebble-roots.pem"
    roots.write_bytes(fleet.ca.issuing_roots_pem())

    nodes = [start_node(fleet, domain, i, roots, start_nginx, tmp_path) for i in range(2)]

    def served(nginx: Nginx) -> int | None:
        try:
            return nginx.served_certificate(domain, roots).serial_number
        except (OSError, ssl.SSLError):
            return None

    def serving_what_is_published() -> bool:
        # Whatever is published by now: on a slow machine a renewal (every 10 s) can come
        # before the nodes are up, and the first serial is then rightly never served.
        latest = fleet.stored(domain)
        return latest is not None and all(
            served(nginx) == int(latest.pointer.serial, 16) for nginx, _agent in nodes
        )

    wait_for(
        lambda: f"first {first['serialNumber']}, served {[served(n) for n, _ in nodes]}",
        serving_what_is_published,
        30,
    )
    client = Client([nginx for nginx, _agent in nodes], domain, roots)
    client.start()
    try:
        start = published_revision(fleet, domain)
        wait_for("three renewals", lambda: published_revision(fleet, domain) >= start + 3, 90)
        latest = fleet.stored(domain)
        assert latest is not None
        for nginx, _agent in nodes:
            nginx.wait_until_serving(
                int(latest.pointer.serial, 16), domain, trust=roots, timeout=4 * POLL + 5
            )
        newest = int(latest.pointer.serial, 16)
        wait_for("the client sees the newest", lambda: all(newest in s for s in client.serials), 5)
    finally:
        client.stop.set()
        client.join(10)
        for _nginx, agent in nodes:
            agent.stop()

    assert client.failures == [], client.failures[:5]
    assert client.handshakes > 100
    for seen in client.serials:
        # Three renewals while the client watched: at least the last two were installed in
        # front of it (the first may have landed before its first handshake).
        assert len(seen) >= 3, "a node did not serve every renewal"
    assert fleet.ca.orders_created() == latest.pointer.revision  # one order per certificate
    status = fleet.install.managed_certificate(fleet.namespace, "web")["status"]
    assert status["conditions"][0]["status"] == "True"


def _ready(fleet: Fleet) -> tuple[datetime, str]:
    status = fleet.install.managed_certificate(fleet.namespace, "web")["status"]
    renewal = datetime.fromisoformat(status["renewalTime"].replace("Z", "+00:00"))
    return renewal, status["conditions"][0]["message"]


def test_the_users_renew_before_sets_the_renewal_time_and_the_message_names_the_rule(
    start_fleet: Callable[..., Fleet],
) -> None:
    # One-hour certificates and a 10-minute margin: renewed 10 minutes before expiry, not at
    # 2/3 of the hour.
    fleet = start_fleet(acme={"certificate_validity_seconds": 3600})
    domain = new_domain()
    fleet.apply_certificate("automatic.yaml", "web", domain, renewBeforeSeconds=600)
    fleet.install.wait_for_condition(fleet.namespace, "web", "True")
    stored = fleet.stored(domain)
    assert stored is not None
    leaf = x509.load_pem_x509_certificate(stored.fullchain)
    renewal, message = _ready(fleet)
    assert renewal == leaf.not_valid_after_utc - timedelta(seconds=600)
    assert "(10 minutes before expiry, spec.renewBeforeSeconds)" in message

    # A margin longer than the certificate's life would renew it forever: 2/3 of the life.
    patch = json.dumps({"spec": {"renewBeforeSeconds": 7200}})
    fleet.install.control_plane.kubectl(
        "patch", "mcert", "web", "-n", fleet.namespace, "--type=merge", "-p", patch
    )
    wait_for("the 2/3 rule in the status", lambda: "2/3 of its" in _ready(fleet)[1], 30)
    renewal, message = _ready(fleet)
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    two_thirds = leaf.not_valid_before_utc + lifetime * 2 / 3
    assert abs((renewal - two_thirds).total_seconds()) < 1  # the status names whole seconds
    assert ": renewBeforeSeconds is not shorter than the lifetime)" in message
    assert fleet.ca.orders_created() == 1, "neither margin makes the certificate due"


def _leader(fleet: Fleet) -> ServerProcess:
    acting = [
        p for p in fleet.install.operators if p.alive() and "leading as" in p.log_path.read_text()
    ]
    assert len(acting) == 1, f"{len(acting)} replicas act"
    return acting[0]


def test_two_replicas_make_one_order_per_renewal_and_the_standby_takes_over(
    start_fleet: Callable[..., Fleet],
) -> None:
    fleet = start_fleet(acme={"certificate_validity_seconds": 12}, replicas=2)
    domain = new_domain()
    fleet.apply_certificate("automatic.yaml", "web", domain, renewBeforeSeconds=60)
    fleet.install.wait_for_condition(fleet.namespace, "web", "True")
    wait_for("two renewals", lambda: published_revision(fleet, domain) >= 3, 60)
    assert fleet.ca.orders_created() == published_revision(fleet, domain)

    leader = _leader(fleet)
    leader.kill()
    standby = next(p for p in fleet.install.operators if p is not leader)
    killed_at = published_revision(fleet, domain)
    wait_for(
        "a renewal by the standby", lambda: published_revision(fleet, domain) >= killed_at + 2, 60
    )
    assert "leading as" in standby.log_path.read_text()
    assert fleet.ca.orders_created() == published_revision(fleet, domain)


def forget_earlier_validations(fleet: Fleet, domain: str) -> None:
    """Deactivates the authorizations of pebble's orders so far, as the operator's own ACME
    account: pebble reuses a valid authorization for 1 order in 100 even with
    PEBBLE_AUTHZREUSE=0 (it reuses unless `rand.Intn(100) > percent`), and such an order is
    issued without the validation the test made fail."""
    plane = fleet.install.control_plane
    listed = plane.kubectl(
        "get", "secret", "-n", OPERATOR_NAMESPACE, "-l", f"{ACCOUNT_LABEL}=true", "-o", "json"
    )
    account = next(
        secret
        for secret in json.loads(listed.stdout)["items"]
        if secret["metadata"]["annotations"][ACCOUNT_DIRECTORY_ANNOTATION] == fleet.ca.directory_url
    )
    key, alg = account_key_from_json(base64.b64decode(account["data"][ACCOUNT_KEY]).decode())
    registration = messages.RegistrationResource(
        uri=account["metadata"]["annotations"][ACCOUNT_URL_ANNOTATION], body=messages.Registration()
    )
    net = ClientNetwork(
        key,
        alg=alg,
        account=registration,
        # requests takes a CA file path where the library's annotation says bool.
        verify_ssl=str(fleet.ca.listener_ca_bundle),  # type: ignore[arg-type]
        timeout=10,
    )
    acme = ClientV2(ClientV2.get_directory(fleet.ca.directory_url, net), net)
    identifier = messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=domain)
    base = fleet.ca.directory_url.removesuffix("/dir")
    for order_id in fleet.ca.order_ids():
        order = net.post(f"{base}/my-order/{order_id}", None, new_nonce_url=acme.directory.newNonce)
        for url in order.json()["authorizations"]:
            authorization = messages.Authorization(identifier=identifier)
            deactivated = acme.deactivate_authorization(
                messages.AuthorizationResource(uri=url, body=authorization)
            )
            assert deactivated.body.status == messages.STATUS_DEACTIVATED, deactivated


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def statuses_since(
    fleet: Fleet, name: str, resource_version: str, until_failures: int, timeout: float
) -> list[dict[str, Any]]:
    """The resource's statuses after `resource_version`, each version the API server's watch
    delivers, up to the first with `until_failures` failed issuances in a row."""
    kubeconfig = str(fleet.install.control_plane.admin_kubeconfig)
    api = client.CustomObjectsApi(config.new_client_from_config(kubeconfig))
    statuses: list[dict[str, Any]] = []
    events = watch.Watch().stream(
        api.list_namespaced_custom_object,
        GROUP,
        VERSION,
        fleet.namespace,
        MANAGED_CERTIFICATES,
        field_selector=f"metadata.name={name}",
        resource_version=resource_version,
        timeout_seconds=int(timeout),
        _request_timeout=timeout + 10,
    )
    for event in events:
        status = event["object"].get("status") or {}
        if statuses and status == statuses[-1]:
            continue  # a change of the metadata only (kopf's progress, the annotation)
        statuses.append(status)
        if int(status.get("failedIssuanceAttempts") or 0) >= until_failures:
            events.close()
            return statuses
    counts = [status.get("failedIssuanceAttempts") for status in statuses]
    raise AssertionError(f"{until_failures} failures in a row not within {timeout:g} s: {counts}")


def test_a_failing_ca_is_retried_with_backoff_while_the_old_certificate_stays(
    start_fleet: Callable[..., Fleet],
) -> None:
    fleet = start_fleet(
        operator_args=["--issuance-backoff-seconds=1", "--issuance-backoff-cap-seconds=8"]
    )
    domain = new_domain()
    fleet.apply_certificate("automatic.yaml", "web", domain)
    before = fleet.install.wait_for_condition(fleet.namespace, "web", "True")["status"]
    orders_before = fleet.ca.orders_created()
    forget_earlier_validations(fleet, domain)

    # The CA can no longer validate: challenges now go to a closed port.
    working_proxy = fleet.nginx.challenge_proxy
    fleet.nginx.challenge_proxy = f"http://127.0.0.1:{free_port()}"
    fleet.nginx.write_config()
    fleet.nginx.reload()
    since = fleet.install.managed_certificate(fleet.namespace, "web")["metadata"]["resourceVersion"]
    renew = subprocess.run(
        [sys.executable, "-m", "certfleet.cli", "renew", "web", "-n", fleet.namespace],
        env={**os.environ, "KUBECONFIG": str(fleet.install.control_plane.admin_kubeconfig)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert renew.returncode == 0, renew.stderr

    # Every status written since the request, in order, up to the fourth failure in a row:
    # the API server's watch replays each one, where polls under load can miss a failure.
    statuses = statuses_since(fleet, "web", since, until_failures=4, timeout=90)
    failures: list[tuple[int, int, datetime]] = []  # (in a row, announced delay, written at)
    for written in statuses:
        count = int(written.get("failedIssuanceAttempts") or 0)
        if count != (failures[-1][0] if failures else 0):
            message = written["conditions"][0]["message"]
            announced = re.search(r"next attempt in (\d+) s", message)
            assert announced is not None, message
            failures.append((count, int(announced.group(1)), _time(written["lastFailureTime"])))
    status = statuses[-1]
    # Counted, not timed: after the 1st, 2nd, 3rd ... failure in a row the operator waits
    # 1 s, 2 s, 4 s ... (the base, doubling up to the cap), and it said so each time.
    assert [count for count, _, _ in failures] == [1, 2, 3, 4], failures
    assert all(delay == min(2 ** (count - 1), 8) for count, delay, _ in failures), failures
    # And it kept to them: no attempt came before its announced time, by the operator's own
    # clock (a loaded machine makes the gaps longer, never shorter). The status names whole
    # seconds, and the delays are whole seconds: truncating both times keeps the inequality.
    for (_, delay, earlier), (_, _, later) in itertools.pairwise(failures):
        assert later - earlier >= timedelta(seconds=delay), failures
    assert fleet.ca.orders_created() - orders_before == failures[-1][0]

    ready = status["conditions"][0]
    assert (ready["status"], ready["reason"]) == ("True", "IssuanceFailed"), ready
    assert status["lastFailureReason"] == "IssuanceFailed"
    assert status["serialNumber"] == before["serialNumber"]
    stored = fleet.stored(domain)
    assert stored is not None and stored.pointer.serial == before["serialNumber"]
    port = fleet.install.metrics_port
    assert port is not None
    seen = metric_value(
        port,
        "certfleet_certificate_failed_issuance_attempts",
        {"namespace": fleet.namespace, "name": "web"},
    )
    assert seen is not None and seen >= failures[-1][0]

    # The CA recovers: the next attempt (within the 8 s cap) renews, and the request is done.
    fleet.nginx.challenge_proxy = working_proxy
    fleet.nginx.write_config()
    fleet.nginx.reload()
    wait_for("the renewal after recovery", lambda: published_revision(fleet, domain) == 2, 20)
    resource = fleet.install.wait_for_condition(fleet.namespace, "web", "True", "Issued")
    assert resource["status"]["failedIssuanceAttempts"] == 0

    # The request is done: kopf removes the annotation in its patch after the handler, a
    # moment after the status says Issued.
    def annotations() -> dict[str, str]:
        found = fleet.install.managed_certificate(fleet.namespace, "web")["metadata"]
        return found.get("annotations") or {}

    wait_for(
        lambda: f"renew-now still set: {annotations()}",
        lambda: RENEW_NOW not in annotations(),
        timeout=10,
    )
