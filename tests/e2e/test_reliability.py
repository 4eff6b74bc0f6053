"""Crashes and outages end to end, on the real kube-apiserver, versitygw S3 and pebble: the
operator SIGKILLed at random moments of issuance, publication and renewal, S3 down while it
publishes, the CA down mid-order. What must hold: every resource ends Ready by itself; the
pointer always names files that exist and verify; the status names the published serial; a
kill costs at most one ACME order, and no certificate the CA issued is ever thrown away.

The kill moments are drawn from a seeded generator (CERTFLEET_RELIABILITY_SEED to replay one);
the seed, the moments and the figures are printed.
"""

from __future__ import annotations

import base64
import json
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import PolicyBuilder, Store

from certfleet.api.names import RENEW_NOW_ANNOTATION
from certfleet.datastore.encryption import MasterKey
from certfleet.datastore.location import REVISIONS_DIR
from certfleet.datastore.protocol import StoredCertificate
from certfleet.datastore.s3_store import S3Datastore
from e2e.fleet import Fleet, new_domain
from testbed.certfleet_install import OPERATOR_NAMESPACE
from testbed.s3 import S3Server
from testbed.waiting import wait_for

pytestmark = [pytest.mark.testbed, pytest.mark.reliability]

KILLS = 20
CERTIFICATES = 4
# 400-second certificates, renewed 200 s after issuance: the first ones renew by themselves
# during the run, the rest is renew-now. A certificate whose order is resumed minutes later
# (a loaded machine, kills in a row) is still not due, so the policy keeps it.
VALIDITY_SECONDS = 400
RENEW_BEFORE_SECONDS = 200
OPERATOR_ARGS = ("--issuance-backoff-seconds=1", "--issuance-backoff-cap-seconds=4")
MOMENTS = ("ordered", "issued", "published", "running")


def _spki(key: x509.Certificate | bytes) -> bytes:
    public = (
        key.public_key()
        if isinstance(key, x509.Certificate)
        else serialization.load_pem_private_key(key, password=None).public_key()
    )
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def verification_problem(stored: StoredCertificate, domain: str, roots: bytes) -> str | None:
    """What is wrong with a published revision: chain, name, key (its time is not judged:
    a one-minute certificate may be expired while the operator is down)."""
    try:
        chain = x509.load_pem_x509_certificates(stored.fullchain)
        leaf = chain[0]
        store = Store(x509.load_pem_x509_certificates(roots))
        verifier = (
            PolicyBuilder()
            .store(store)
            .time(leaf.not_valid_before_utc + timedelta(seconds=1))
            .build_server_verifier(x509.DNSName(domain))
        )
        verifier.verify(leaf, chain[1:])
        if _spki(leaf) != _spki(stored.privkey):
            return "the key does not match the certificate"
        if leaf.serial_number != int(stored.pointer.serial, 16):
            return "the pointer names another serial than its certificate's"
    except Exception as error:  # any failure to verify is what this looks for
        return f"{type(error).__name__}: {error}"
    return None


class PointerSampler(threading.Thread):
    """Reads every pointer and what it names, over and over, as an agent would: every read
    must verify. Records each revision seen."""

    def __init__(self, fleet: Fleet, domains: list[str], roots: bytes) -> None:
        super().__init__(daemon=True)
        self.fleet, self.domains, self.roots = fleet, domains, roots
        self.store = S3Datastore(fleet.bucket.endpoint.client(), [MasterKey(fleet.master_key)])
        self.failures: list[str] = []
        self.revisions: dict[str, int] = dict.fromkeys(domains, 0)
        self.samples = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for domain in self.domains:
                self.sample(domain)
            self.stop.wait(0.1)

    def sample(self, domain: str) -> None:
        try:
            stored = self.store.read_current(self.fleet.location(domain))
        except Exception as error:  # an integrity error is exactly what must never happen
            self.failures.append(f"{domain}: {type(error).__name__}: {error}")
            return
        self.samples += 1
        if stored is None:
            return
        problem = verification_problem(stored, domain, self.roots)
        if problem is not None:
            self.failures.append(f"{domain} revision {stored.pointer.revision}: {problem}")
        self.revisions[domain] = max(self.revisions[domain], stored.pointer.revision)

    def published(self) -> int:
        return sum(self.revisions.values())


def revision_serials(fleet: Fleet, domain: str) -> set[int]:
    """The serial of every revision ever written to the location (none is pruned here: the
    operator keeps replaced revisions for an hour)."""
    location = fleet.location(domain)
    s3 = fleet.bucket.endpoint.client()
    prefix = f"{location.base_key}/{REVISIONS_DIR}/"
    serials: set[int] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=location.bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if item["Key"].endswith("/fullchain.pem"):
                body = s3.get_object(Bucket=location.bucket, Key=item["Key"])["Body"].read()
                serials.add(x509.load_pem_x509_certificate(body).serial_number)
    return serials


def status_agrees(fleet: Fleet, name: str, domain: str) -> bool:
    """Ready, and the status names the serial and revision the pointer names."""
    status = fleet.install.managed_certificate(fleet.namespace, name).get("status", {})
    conditions: list[dict[str, Any]] = status.get("conditions", [])
    ready = next((c for c in conditions if c.get("type") == "Ready"), {})
    stored = fleet.stored(domain)
    return (
        ready.get("status") == "True"
        and stored is not None
        and int(status.get("serialNumber") or "0", 16) == int(stored.pointer.serial, 16)
        and (status.get("datastore") or {}).get("revision") == stored.pointer.revision
    )


def cached(fleet: Fleet, name: str) -> tuple[int | None, str | None]:
    """The serial of the certificate in the resource's cache Secret, and the URL of the
    order under way it keeps (None: none)."""
    status = fleet.install.managed_certificate(fleet.namespace, name).get("status", {})
    secret = fleet.secret(status.get("cacheSecretName") or f"missing-{name}")
    if secret is None:
        return None, None
    data = {key: base64.b64decode(value) for key, value in (secret.get("data") or {}).items()}
    crt, order = data.get("tls.crt"), data.get("pending-order.json")
    serial = x509.load_pem_x509_certificate(crt).serial_number if crt else None
    return serial, (json.loads(order)["orderUrl"] if order else None)


@dataclass
class Kills:
    """The kill phase's record: each kill's moment and delay, and when it happened."""

    seed: int
    moments: list[tuple[str, float]] = field(default_factory=list)


def test_twenty_sigkills_lose_no_order_and_throw_no_certificate_away(
    start_fleet: Callable[..., Fleet],
) -> None:
    started = time.monotonic()
    seed = int(os.environ.get("CERTFLEET_RELIABILITY_SEED") or random.randrange(2**32))
    rng = random.Random(seed)
    kills = Kills(seed)
    print(f"reliability seed {seed} (CERTFLEET_RELIABILITY_SEED={seed} replays it)")
    fleet = start_fleet(
        acme={"certificate_validity_seconds": VALIDITY_SECONDS}, operator_args=OPERATOR_ARGS
    )
    names = [f"web-{index}" for index in range(CERTIFICATES)]
    domains = [new_domain() for _ in names]
    for name, domain in zip(names, domains, strict=True):
        fleet.apply_certificate(
            "automatic.yaml", name, domain, renewBeforeSeconds=RENEW_BEFORE_SECONDS
        )
    sampler = PointerSampler(fleet, domains, fleet.ca.issuing_roots_pem())
    sampler.start()
    try:
        for _ in range(KILLS):
            moment = rng.choice(MOMENTS)
            delay = rng.uniform(0, 3.0 if moment == "running" else 0.4)
            _await_moment(fleet, sampler, moment, rng)
            time.sleep(delay)  # the kill moment itself: a random instant after the event
            assert fleet.install.operator is not None
            fleet.install.operator.kill()
            kills.moments.append((moment, round(delay, 3)))
            fleet.install.start_operator(fleet.ca, *OPERATOR_ARGS)

        # Settled too: a kill right after an issuance leaves that renew-now's order saved in
        # the cache, for the next leader to carry on; the run ends once it has.
        wait_for(
            lambda: f"every resource Ready with the published serial, settled: {_describe(fleet)}",
            lambda: all(
                status_agrees(fleet, name, domain) and _settled(fleet, name)
                for name, domain in zip(names, domains, strict=True)
            ),
            timeout=120,
            interval=0.2,
        )
    finally:
        sampler.stop.set()
        sampler.join(timeout=10)
    # The operator stops cleanly at last; what it had under way stays in the cache.
    fleet.install.stop_operator()

    assert not sampler.failures, sampler.failures[:10]
    assert sampler.samples > 0
    published = set().union(*(revision_serials(fleet, domain) for domain in domains))
    kept = [cached(fleet, name) for name in names]
    cached_serials = {serial for serial, _ in kept if serial is not None}
    pending = {url.rsplit("/", 1)[-1] for _, url in kept if url is not None}
    issued = fleet.ca.issued()  # order id -> serial
    orders = fleet.ca.order_ids()
    # An order wasted: it gave no certificate and is not the one a cache is carrying on.
    wasted = [order for order in orders if order not in issued and order not in pending]
    thrown_away = set(issued.values()) - published - cached_serials
    took = time.monotonic() - started
    print(
        f"reliability: {len(kills.moments)} SIGKILLs survived (moments {kills.moments}); "
        f"{len(orders)} ACME orders for {len(published)} published certificates, "
        f"{len(wasted)} wasted ({len(wasted) / len(kills.moments):.2f} per kill), "
        f"{len(thrown_away)} issued certificates thrown away; "
        f"{sampler.samples} pointer reads verified; {took:.0f} s"
    )
    assert not thrown_away, f"issued but never kept: {sorted(thrown_away)}"
    assert len(wasted) <= len(kills.moments), wasted
    for name, domain in zip(names, domains, strict=True):
        stored = fleet.stored(domain)
        assert stored is not None, name


def _await_moment(fleet: Fleet, sampler: PointerSampler, moment: str, rng: random.Random) -> None:
    """Waits for the event a kill follows. Once the operator leads, a renewal is asked for
    now (a random certificate: renewals also come by themselves), then: its order placed, a
    certificate issued, a pointer moved; or, for "running", nothing more."""
    ca = fleet.ca
    wait_for("the operator leading", lambda: _leading(fleet), timeout=30, interval=0.05)
    if moment == "running":
        return
    orders, issued, published = ca.orders_created(), len(ca.issued()), sampler.published()
    name = f"web-{rng.randrange(CERTIFICATES)}"
    # Only on a settled resource: a renew-now that arrives while kopf still processes the
    # resource's creation (a kill interrupted it) is folded into that and not seen as an
    # update until the next restart.
    wait_for(
        lambda: f"{name} Ready, without a renew-now pending: {_describe(fleet)}",
        lambda: _settled(fleet, name),
        timeout=60,
        interval=0.1,
    )
    fleet.install.control_plane.kubectl(
        "annotate",
        "--overwrite",
        "mcert",
        name,
        "-n",
        fleet.namespace,
        f"{RENEW_NOW_ANNOTATION}={time.time()}",
    )
    if moment == "ordered":
        wait_for("an ACME order", lambda: ca.orders_created() > orders, 60, 0.01)
    elif moment == "issued":
        wait_for("a certificate issued", lambda: len(ca.issued()) > issued, 60, 0.01)
    else:
        wait_for("a pointer moved", lambda: sampler.published() > published, 60, 0.01)


def _settled(fleet: Fleet, name: str) -> bool:
    resource = fleet.install.managed_certificate(fleet.namespace, name)
    annotations = resource["metadata"].get("annotations") or {}
    conditions: list[dict[str, Any]] = resource.get("status", {}).get("conditions", [])
    ready = next((c for c in conditions if c.get("type") == "Ready"), {})
    return ready.get("status") == "True" and RENEW_NOW_ANNOTATION not in annotations


def _leading(fleet: Fleet) -> bool:
    operator = fleet.install.operator
    return operator is not None and "leading as" in operator.log_path.read_text()


def _describe(fleet: Fleet) -> str:
    rows = fleet.install.control_plane.kubectl("get", "mcert", "-n", fleet.namespace).stdout
    log = fleet.install.operator.log_tail(20) if fleet.install.operator else ""
    return f"\n{rows}\noperator log:\n{log}"


def test_s3_down_while_publishing_recovers_from_the_cache_without_an_order(
    fleet: Fleet, s3_server: S3Server
) -> None:
    """versitygw stops the moment the CA has issued: the certificate waits in the cache,
    nothing half-published is ever followed, and S3 back, it is published with no new order."""
    domain = new_domain()
    fleet.apply_certificate("automatic.yaml", "web", domain)
    wait_for("a certificate issued", lambda: len(fleet.ca.issued()) == 1, 30, 0.005)
    try:
        s3_server.stop()
        resource = fleet.install.wait_for_condition(
            fleet.namespace, "web", "False", "DatastoreUnavailable", timeout=60
        )
        assert resource["status"].get("serialNumber") in (None, "")
    finally:
        if s3_server.process is None or not s3_server.process.alive():
            s3_server.start()
    status = fleet.install.wait_for_condition(fleet.namespace, "web", "True", timeout=60)["status"]
    stored = fleet.stored(domain)
    assert stored is not None
    assert verification_problem(stored, domain, fleet.ca.issuing_roots_pem()) is None
    (serial,) = fleet.ca.issued().values()
    assert int(status["serialNumber"], 16) == serial == int(stored.pointer.serial, 16)
    assert fleet.ca.orders_created() == 1, "S3 going away cost another order"


def test_the_ca_down_mid_order_backs_off_and_recovers_by_itself(fleet: Fleet) -> None:
    """pebble stops right after an order is placed (and forgets it: it keeps nothing on
    disk): the order cannot be resumed, the resource says why and retries with back-off,
    and once pebble is back a new order makes it Ready; nothing was published meanwhile."""
    domain = new_domain()
    fleet.apply_certificate("automatic.yaml", "web", domain)
    wait_for("an ACME order", lambda: fleet.ca.orders_created() == 1, 30, 0.002)
    fleet.ca.stop_pebble()
    try:
        resource = fleet.install.wait_for_condition(
            fleet.namespace, "web", "False", "IssuanceFailed", timeout=60
        )
        assert fleet.stored(domain) is None, "something was published without a certificate"
        assert "unreachable" in resource["status"]["conditions"][0]["message"]
    finally:
        fleet.ca.restart_pebble()  # same ports: the spec's directory URL stays right
    # A restarted pebble signs under a new root: the CloudHost's bundle names it, as an
    # admin's would after a private CA's rotation.
    fleet.install.apply_secret(
        OPERATOR_NAMESPACE,
        f"{fleet.cloudhost}-trust-bundle",
        {"ca.crt": fleet.ca.issuing_roots_pem() + fleet.manual_ca.root_pem},
    )
    fleet.install.wait_for_condition(fleet.namespace, "web", "True", timeout=90)
    stored = fleet.stored(domain)
    assert stored is not None
    assert verification_problem(stored, domain, fleet.ca.issuing_roots_pem()) is None
