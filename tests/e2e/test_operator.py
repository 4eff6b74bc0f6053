"""The operator's main job end to end, on the real control plane, pebble, S3 and nginx:
`kubectl apply` of a ManagedCertificate to a verified certificate in S3 (DESIGN.md steps 1-4)."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import PolicyBuilder, Store

from e2e.fleet import Fleet, new_domain
from testbed.certfleet_install import CertfleetInstall, load_example
from testbed.control_plane import ControlPlane
from testbed.waiting import wait_for

pytestmark = pytest.mark.testbed


def _verify_chain(fullchain: bytes, roots: bytes, domain: str) -> x509.Certificate:
    chain = x509.load_pem_x509_certificates(fullchain)
    store = Store(x509.load_pem_x509_certificates(roots))
    verifier = PolicyBuilder().store(store).build_server_verifier(x509.DNSName(domain))
    verifier.verify(chain[0], chain[1:])
    return chain[0]


def _public_key_der(key_pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(key_pem, password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_automatic_certificate_becomes_ready_verified_in_s3(fleet: Fleet) -> None:
    domain = new_domain()
    started = time.monotonic()
    fleet.apply_certificate("automatic.yaml", "web", domain)

    resource = fleet.install.wait_for_condition(fleet.namespace, "web", "True", timeout=30)
    took = time.monotonic() - started
    status = resource["status"]
    assert status["conditions"][0]["reason"] == "Issued", status
    assert fleet.ca.orders_created() == 1

    table = fleet.install.control_plane.kubectl("get", "mcert", "-n", fleet.namespace).stdout
    header, row = table.splitlines()[:2]
    assert header.split() == ["NAME", "READY", "DOMAIN", "METHOD", "EXPIRES", "RENEWAL", "AGE"]
    assert row.split()[:6] == [
        "web",
        "True",
        domain,
        "AUTOMATIC",
        status["notAfter"],
        status["renewalTime"],
    ]

    stored = fleet.stored(domain)
    assert stored is not None, "nothing was published to S3"
    leaf = _verify_chain(stored.fullchain, fleet.ca.issuing_roots_pem(), domain)
    assert _public_key_der(stored.privkey) == leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert f"{leaf.serial_number:x}".zfill(len(status["serialNumber"])) == status["serialNumber"]
    assert status["datastore"]["revision"] == stored.pointer.revision

    # The private key is never stored unencrypted in S3.
    s3 = fleet.bucket.endpoint.client()
    for item in s3.list_objects_v2(Bucket=fleet.bucket.name)["Contents"]:
        body = s3.get_object(Bucket=fleet.bucket.name, Key=item["Key"])["Body"].read()
        assert b"PRIVATE KEY" not in body, item["Key"]

    secret = fleet.secret(status["cacheSecretName"])
    assert secret is not None and secret["type"] == "kubernetes.io/tls"
    print(f"AUTOMATIC: Ready in {took:.2f} s")


def test_fresh_control_plane_reuses_the_datastore_without_an_order(
    fleet: Fleet, tmp_path: Path
) -> None:
    domain = new_domain()
    fleet.apply_certificate("automatic.yaml", "web", domain)
    first = fleet.install.wait_for_condition(fleet.namespace, "web", "True")["status"]
    assert fleet.ca.orders_created() == 1

    # A new cluster (new etcd, no cache Secret, no ACME account) with the same S3 datastore.
    with ControlPlane(tmp_path / "second-control-plane") as fresh:
        install = CertfleetInstall(fresh, tmp_path / "second-certfleet")
        install.install_crds()
        install.create_cloudhost(
            fleet.cloudhost,
            fleet.bucket.endpoint,
            fleet.bucket.name,
            fleet.master_key,
            fleet.trust_bundle,
        )
        fresh.kubectl("create", "namespace", fleet.namespace)
        fleet.install.stop_operator()
        install.start_operator(fleet.ca)
        try:
            resource = load_example("automatic.yaml")
            resource["metadata"].update(name="web", namespace=fleet.namespace)
            resource["spec"].update(domain=domain, cloudhost=fleet.cloudhost)
            resource["spec"]["acme"]["server"] = fleet.ca.directory_url
            install.apply(resource)
            again = install.wait_for_condition(fleet.namespace, "web", "True")["status"]
            cache = fresh.kubectl(
                "get", "secret", again["cacheSecretName"], "-n", fleet.namespace, check=False
            )
        finally:
            fresh.kubectl(
                "delete", "mcert", "--all", "-n", fleet.namespace, "--timeout=30s", check=False
            )
            install.stop_operator()
    assert again["conditions"][0]["reason"] == "Reused"
    assert again["serialNumber"] == first["serialNumber"]
    assert fleet.ca.orders_created() == 1, "the fresh cluster ordered a new certificate"
    assert cache.returncode == 0, "the cluster cache Secret was not restored"


def test_manual_certificate_waits_then_is_accepted_and_published(fleet: Fleet) -> None:
    domain = new_domain()
    fleet.apply_certificate("manual.yaml", "shop", domain, manual={"secretName": "shop-tls"})
    waiting = fleet.install.wait_for_condition(
        fleet.namespace, "shop", "False", "WaitingForManualCertificate"
    )
    assert "shop-tls" in waiting["status"]["conditions"][0]["message"]
    assert fleet.stored(domain) is None

    pair = fleet.manual_ca.leaf(domain)
    fleet.install.apply_secret(
        fleet.namespace,
        "shop-tls",
        {"tls.crt": pair.fullchain, "tls.key": pair.key},
        type_="kubernetes.io/tls",
    )
    ready = fleet.install.wait_for_condition(
        fleet.namespace, "shop", "True", "ManualCertificateAccepted"
    )
    stored = fleet.stored(domain)
    assert stored is not None and stored.fullchain == pair.fullchain
    assert ready["status"]["serialNumber"] == stored.pointer.serial
    assert fleet.ca.orders_created() == 0


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("mismatched pair", "KeyMismatch"),
        ("expired", "Expired"),
        ("another domain", "NameMismatch"),
        ("not PEM", "InvalidPEM"),
    ],
)
def test_bad_manual_certificate_is_refused_and_not_published(
    fleet: Fleet, case: str, reason: str
) -> None:
    domain = new_domain()
    ca = fleet.manual_ca
    if case == "mismatched pair":
        crt, key = ca.leaf(domain).fullchain, ca.leaf(domain).key
    elif case == "expired":
        expired = ca.leaf(domain, valid_from_days=-100, valid_for_days=90)
        crt, key = expired.fullchain, expired.key
    elif case == "another domain":
        other = ca.leaf("other.certfleet.test")
        crt, key = other.fullchain, other.key
    else:
        crt, key = b"this is not a certificate", ca.leaf(domain).key
    fleet.install.apply_secret(
        fleet.namespace, "bad-tls", {"tls.crt": crt, "tls.key": key}, type_="kubernetes.io/tls"
    )
    fleet.apply_certificate("manual.yaml", "bad", domain, manual={"secretName": "bad-tls"})

    resource = fleet.install.wait_for_condition(fleet.namespace, "bad", "False", reason)
    message = resource["status"]["conditions"][0]["message"]
    assert "bad-tls" in message
    assert "PRIVATE KEY" not in message
    assert fleet.stored(domain) is None, "a refused certificate was published"
    assert fleet.install.operator is not None and fleet.install.operator.alive()


def test_bad_specs_are_reported_and_the_operator_keeps_running(fleet: Fleet) -> None:
    # Passes the schema's pattern, fails IDNA: only the operator can tell.
    fleet.apply_certificate("automatic.yaml", "bad-idna", "xn--zz.certfleet.test")
    fleet.apply_certificate("automatic.yaml", "no-host", new_domain(), cloudhost="missing-host")
    invalid = fleet.install.wait_for_condition(fleet.namespace, "bad-idna", "False", "InvalidSpec")
    assert "xn--zz" in invalid["status"]["conditions"][0]["message"]
    fleet.install.wait_for_condition(fleet.namespace, "no-host", "False", "DatastoreNotConfigured")

    domain = new_domain()
    fleet.apply_certificate("automatic.yaml", "good", domain)
    fleet.install.wait_for_condition(fleet.namespace, "good", "True")
    assert fleet.install.operator is not None and fleet.install.operator.alive()


def test_operator_killed_during_issuance_ends_ready_with_at_most_one_extra_order(
    fleet: Fleet,
) -> None:
    domain = new_domain()
    fleet.apply_certificate("automatic.yaml", "web", domain)
    # The kill point: an order is under way.
    wait_for("an ACME order", lambda: fleet.ca.orders_created() > 0, timeout=20, interval=0.005)
    assert fleet.install.operator is not None
    fleet.install.operator.signal(signal.SIGKILL)
    fleet.install.stop_operator()

    fleet.install.start_operator(fleet.ca)
    fleet.install.wait_for_condition(fleet.namespace, "web", "True")
    assert fleet.ca.orders_created() <= 2
    assert fleet.stored(domain) is not None


def test_many_certificates_at_once_all_become_ready(fleet: Fleet) -> None:
    # More resources than kopf has worker threads on this machine: a sleeping renewal timer
    # per resource must not hold one (it once did, and the operator froze at six).
    names = [f"many-{index}" for index in range(10)]
    for name in names:
        fleet.apply_certificate("automatic.yaml", name, new_domain())
    for name in names:
        fleet.install.wait_for_condition(fleet.namespace, name, "True", timeout=60)
    assert fleet.ca.orders_created() == len(names)


def test_a_corrupt_pointer_is_replaced_from_the_cache_without_an_order(fleet: Fleet) -> None:
    domain = new_domain()
    fleet.apply_certificate("automatic.yaml", "web", domain)
    first = fleet.install.wait_for_condition(fleet.namespace, "web", "True")["status"]
    location = fleet.location(domain)
    fleet.bucket.endpoint.client().put_object(
        Bucket=location.bucket, Key=location.pointer_key, Body=b"{not a pointer"
    )
    # Any reconciliation notices it; a changed spec brings one at once.
    fleet.apply_certificate("automatic.yaml", "web", domain, renewBeforeSeconds=604801)

    def restored() -> dict[str, Any] | None:
        status = fleet.install.managed_certificate(fleet.namespace, "web")["status"]
        ready = status["conditions"][0]
        return status if ready["reason"] == "RestoredFromCache" else None

    status = wait_for("the pointer replaced from the cache", restored, 30)
    assert status["conditions"][0]["status"] == "True"
    assert status["serialNumber"] == first["serialNumber"]
    stored = fleet.stored(domain)
    assert stored is not None and stored.pointer.revision > first["datastore"]["revision"]
    assert fleet.ca.orders_created() == 1
