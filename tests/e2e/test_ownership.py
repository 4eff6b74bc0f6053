"""An owner per location, end to end on the real control plane, pebble, versitygw and nginx:
two namespaces claiming one (cloudhost, build, domain), a handover after the owner is
deleted, and a CloudHost that does not admit a namespace."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from e2e.fleet import Fleet, new_domain
from testbed.certfleet_install import load_example
from testbed.waiting import wait_for

pytestmark = pytest.mark.testbed

# Rechecks every second and retries every two: minutes of a production operator's rechecks
# (an hour apart) in well under a minute of the test's.
FAST_RECHECKS = ("--recheck-seconds=1",)


@pytest.fixture
def namespaces(fleet_for_claims: Fleet) -> Iterator[list[str]]:
    """Extra namespaces of a test; their resources are deleted while the operator runs."""
    made: list[str] = []
    yield made
    plane = fleet_for_claims.install.control_plane
    for namespace in made:
        plane.kubectl("delete", "mcert", "--all", "-n", namespace, "--timeout=30s", check=False)


@pytest.fixture
def fleet_for_claims(start_fleet: Any) -> Fleet:
    fleet: Fleet = start_fleet(operator_args=FAST_RECHECKS)
    return fleet


def new_namespace(fleet: Fleet, made: list[str], suffix: str) -> str:
    namespace = f"{fleet.namespace}-{suffix}"
    fleet.install.control_plane.kubectl("create", "namespace", namespace)
    made.append(namespace)
    return namespace


def apply_in(fleet: Fleet, namespace: str, name: str, domain: str, **spec: Any) -> None:
    resource = load_example("automatic.yaml")
    resource["metadata"].update(name=name, namespace=namespace)
    resource["spec"].update({"domain": domain, "cloudhost": fleet.cloudhost, **spec})
    resource["spec"]["acme"]["server"] = fleet.ca.directory_url
    fleet.install.apply(resource)


def ready(fleet: Fleet, namespace: str, name: str) -> dict[str, Any]:
    status = fleet.install.managed_certificate(namespace, name).get("status", {})
    found: dict[str, Any] = next(
        (c for c in status.get("conditions", []) if c.get("type") == "Ready"), {}
    )
    return found


def reconciliations(fleet: Fleet, reason: str) -> int:
    """How many reconciliations the operator logged with `reason` (it logs one line each)."""
    assert fleet.install.operator is not None
    text = fleet.install.operator.log_path.read_text(errors="replace")
    return len(re.findall(rf" {reason}: ", text))


def cache_secrets(fleet: Fleet, namespace: str) -> list[str]:
    found = fleet.install.control_plane.kubectl(
        "get", "secrets", "-n", namespace, "-l", "certfleet.io/cache", "-o", "json"
    )
    return [item["metadata"]["name"] for item in json.loads(found.stdout)["items"]]


def claim(fleet: Fleet, domain: str) -> dict[str, Any] | None:
    key = fleet.location(domain).base_key + "/owner.json"
    s3 = fleet.bucket.endpoint.client()
    try:
        body = s3.get_object(Bucket=fleet.bucket.name, Key=key)["Body"]
    except s3.exceptions.NoSuchKey:
        return None
    loaded: dict[str, Any] = json.loads(body.read())
    return loaded


def test_two_namespaces_on_one_location_have_one_owner_and_never_flap(
    fleet_for_claims: Fleet, namespaces: list[str]
) -> None:
    fleet = fleet_for_claims
    domain = new_domain()
    fleet.apply_certificate("automatic.yaml", "web", domain)
    # Ready: Issued, or already Reused (the 1 s recheck may come before this poll).
    owner = fleet.install.wait_for_condition(fleet.namespace, "web", "True")
    assert fleet.ca.orders_created() == 1
    wider = new_namespace(fleet, namespaces, "wider")
    same = new_namespace(fleet, namespaces, "same")
    # Honest neighbours: the same location with other names, and an identical duplicate.
    apply_in(fleet, wider, "web", domain, alternativeNames=[f"shop.{domain}"])
    apply_in(fleet, same, "web", domain)
    for namespace in (wider, same):
        told = fleet.install.wait_for_condition(namespace, "web", "False", "LocationClaimed")
        message = ready(fleet, namespace, "web")["message"]
        assert f"ManagedCertificate {fleet.namespace}/web" in message, told["status"]

    # A person of a neighbour's namespace asks for a new certificate: nothing is ordered.
    plane = fleet.install.control_plane
    plane.kubectl("annotate", "mcert", "web", "-n", same, "certfleet.io/renew-now=now")
    revisions: set[int] = set()

    def many_rechecks() -> bool:
        stored = fleet.stored(domain)
        assert stored is not None
        revisions.add(stored.pointer.revision)
        # Only the owner reuses; both neighbours are told, each retry (the log does not say
        # which of the two, so they are counted together).
        return (
            reconciliations(fleet, "Reused") >= 30
            and reconciliations(fleet, "LocationClaimed") >= 40
        )

    wait_for(
        lambda: (
            f"{reconciliations(fleet, 'Reused')} reuses and "
            f"{reconciliations(fleet, 'LocationClaimed')} refusals; pointer revisions {revisions}"
        ),
        many_rechecks,
        timeout=120,
        interval=1,
    )
    assert revisions == {1}  # no flapping: one publish in all those rechecks
    assert fleet.ca.orders_created() == 1  # the duplicate spent no order
    stored = fleet.stored(domain)
    assert stored is not None
    status = fleet.install.managed_certificate(fleet.namespace, "web")["status"]
    assert status["serialNumber"] == stored.pointer.serial == owner["status"]["serialNumber"]
    uid = fleet.install.managed_certificate(fleet.namespace, "web")["metadata"]["uid"]
    assert stored.pointer.owner.endswith(f"/{fleet.namespace}/web/{uid}")
    found = claim(fleet, domain)
    assert found is not None and (found["name"], found["uid"]) == (f"{fleet.namespace}/web", uid)
    for namespace in (wider, same):
        assert ready(fleet, namespace, "web")["status"] == "False"
        assert cache_secrets(fleet, namespace) == []  # no key copied into its namespace
        assert "serialNumber" not in fleet.install.managed_certificate(namespace, "web").get(
            "status", {}
        )
    assert len(cache_secrets(fleet, fleet.namespace)) == 1


def test_a_deleted_owners_location_is_handed_over_deliberately(
    fleet_for_claims: Fleet, namespaces: list[str]
) -> None:
    fleet = fleet_for_claims
    plane = fleet.install.control_plane
    domain = new_domain()
    fleet.apply_certificate("automatic.yaml", "web", domain)
    fleet.install.wait_for_condition(fleet.namespace, "web", "True")  # Issued, or Reused
    heir = new_namespace(fleet, namespaces, "heir")
    apply_in(fleet, heir, "web", domain, alternativeNames=[f"shop.{domain}"])
    fleet.install.wait_for_condition(heir, "web", "False", "LocationClaimed")

    plane.kubectl("delete", "mcert", "web", "-n", fleet.namespace, "--timeout=30s")

    # Gone, but nobody takes the fleet's certificate over without a person's word.
    def told_how() -> dict[str, Any] | None:
        condition = ready(fleet, heir, "web")
        return condition if "no longer exists" in condition.get("message", "") else None

    condition = wait_for(lambda: f"{heir}/web told the owner is gone", told_how, timeout=30)
    assert f"certfleet.io/take-over-from={fleet.namespace}/web" in condition["message"]
    assert fleet.ca.orders_created() == 1

    plane.kubectl(
        "annotate", "mcert", "web", "-n", heir, f"certfleet.io/take-over-from={fleet.namespace}/web"
    )
    # Ready after its own order (with the short recheck, the next look already says Reused:
    # the revision and the order count below say it issued).
    wait_for(
        lambda: f"{heir}/web: {ready(fleet, heir, 'web')}",
        lambda: ready(fleet, heir, "web").get("status") == "True",
        timeout=60,
    )
    stored = fleet.stored(domain)
    assert stored is not None and stored.pointer.revision == 2
    uid = fleet.install.managed_certificate(heir, "web")["metadata"]["uid"]
    assert stored.pointer.owner.endswith(f"/{heir}/web/{uid}")
    found = claim(fleet, domain)
    assert found is not None and found["name"] == f"{heir}/web"
    assert fleet.ca.orders_created() == 2  # its own names: one order

    # The old owner, applied again, is now the one refused: the location was handed over.
    fleet.apply_certificate("automatic.yaml", "web", domain)
    fleet.install.wait_for_condition(fleet.namespace, "web", "False", "LocationClaimed")
    assert f"ManagedCertificate {heir}/web" in ready(fleet, fleet.namespace, "web")["message"]


def test_a_cloudhost_refuses_namespaces_it_does_not_admit_until_one_is_labelled(
    fleet_for_claims: Fleet,
) -> None:
    fleet = fleet_for_claims
    plane = fleet.install.control_plane
    only = json.dumps({"spec": {"allowedNamespaces": ["somewhere-else"]}})
    plane.kubectl("patch", "cloudhost", fleet.cloudhost, "--type=merge", "-p", only)
    domain = new_domain()
    fleet.apply_certificate("automatic.yaml", "web", domain)
    fleet.install.wait_for_condition(fleet.namespace, "web", "False", "NamespaceNotAllowed")
    message = ready(fleet, fleet.namespace, "web")["message"]
    assert f"cloudhost.certfleet.io/{fleet.cloudhost}=allowed" in message
    assert "spec.allowedNamespaces" in message
    # Nothing happened: no claim, no order, no publish, no cache.
    assert claim(fleet, domain) is None and fleet.stored(domain) is None
    assert fleet.ca.orders_created() == 0
    assert cache_secrets(fleet, fleet.namespace) == []

    label = f"cloudhost.certfleet.io/{fleet.cloudhost}=allowed"
    plane.kubectl("label", "namespace", fleet.namespace, label)
    # Ready after its order (the one-second recheck soon says Reused instead of Issued).
    wait_for(
        lambda: f"{fleet.namespace}/web: {ready(fleet, fleet.namespace, 'web')}",
        lambda: ready(fleet, fleet.namespace, "web").get("status") == "True",
        timeout=60,
    )
    stored = fleet.stored(domain)
    assert stored is not None and stored.pointer.revision == 1
    assert fleet.ca.orders_created() == 1
