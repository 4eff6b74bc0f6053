"""A ManagedCertificate's life beside the operator, on the real control plane: no finalizer
holds its deletion, its cache Secret names it as owner, and a person's MANUAL replacement
replaces the published certificate at once, whenever it was issued."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from certfleet.api.spec import cache_secret_name, parse_certificate_spec
from e2e.fleet import Fleet, new_domain
from testbed.waiting import wait_for

pytestmark = pytest.mark.testbed


def _exists(fleet: Fleet, name: str) -> bool:
    found = fleet.install.control_plane.kubectl(
        "get", "mcert", name, "-n", fleet.namespace, "-o", "json", check=False
    )
    return found.returncode == 0


def test_the_cache_secret_is_owned_and_deletion_needs_no_operator(fleet: Fleet) -> None:
    domain = new_domain()
    fleet.apply_certificate("automatic.yaml", "web", domain)
    ready = fleet.install.wait_for_condition(fleet.namespace, "web", "True", timeout=60)
    metadata = ready["metadata"]
    # The renewal timers are certfleet's own tasks: kopf puts no finalizer on the resource.
    assert not metadata.get("finalizers"), metadata.get("finalizers")

    cache = fleet.secret(cache_secret_name(parse_certificate_spec(ready["spec"])))
    assert cache is not None
    assert cache["metadata"].get("ownerReferences") == [
        {
            "apiVersion": "certfleet.io/v1alpha1",
            "kind": "ManagedCertificate",
            "name": "web",
            "uid": metadata["uid"],
        }
    ], json.dumps(cache["metadata"])
    # The test bed runs no kube-controller-manager, so no garbage collector acts on that
    # reference here; the reference itself is what a cluster's collector follows.

    fleet.install.stop_operator()
    deleted = fleet.install.control_plane.kubectl(
        "delete", "mcert", "web", "-n", fleet.namespace, "--timeout=20s", check=False
    )
    assert deleted.returncode == 0, deleted.stderr
    wait_for("the resource to be gone with no operator running", lambda: not _exists(fleet, "web"))


def test_a_manual_replacement_issued_earlier_is_published_at_the_next_recheck(
    start_fleet: Callable[..., Fleet],
) -> None:
    # A supplied Secret is not watched: the renewal timer's recheck looks at it again.
    fleet = start_fleet(operator_args=["--recheck-seconds=2"])
    domain = new_domain()
    ca = fleet.manual_ca  # a CA the fleet's CloudHost trusts
    first, replacement = ca.leaf(domain, valid_from_days=-1), ca.leaf(domain, valid_from_days=-5)
    fleet.install.apply_secret(
        fleet.namespace,
        "shop-tls",
        {"tls.crt": first.fullchain, "tls.key": first.key},
        type_="kubernetes.io/tls",
    )
    fleet.apply_certificate("manual.yaml", "shop", domain, manual={"secretName": "shop-tls"})
    published = fleet.wait_published(domain, first.fullchain)

    # The person swaps in another certificate, issued four days before the published one.
    fleet.install.apply_secret(
        fleet.namespace,
        "shop-tls",
        {"tls.crt": replacement.fullchain, "tls.key": replacement.key},
        type_="kubernetes.io/tls",
    )

    stored = fleet.wait_published(domain, replacement.fullchain)
    assert stored.pointer.revision == published.pointer.revision + 1

    def reported() -> bool:
        status = fleet.install.managed_certificate(fleet.namespace, "shop").get("status", {})
        return bool(status.get("serialNumber") == stored.pointer.serial)

    wait_for("the status to name the replacement's serial", reported)

    def told() -> bool:  # events are posted after the status, from kopf's queue
        said = [e["message"] for e in fleet.events("shop") if e["reason"] == "Published"]
        return any(f"published serial {stored.pointer.serial} to " in m for m in said)

    wait_for("the replacement's Published event", told)
    # What the condition said until the next recheck, as the operator logged it.
    secret = f"the kubernetes.io/tls Secret {fleet.namespace}/shop-tls"
    accepted = f"accepted the certificate of {secret}, replacing serial {published.pointer.serial}"

    def logged() -> bool:
        text = "".join(process.log_path.read_text() for process in fleet.install.operators)
        return f"{fleet.namespace}/shop: ManualCertificateAccepted: {accepted}" in text

    wait_for("the operator to log the acceptance", logged)
