"""The Tenancy port over Kubernetes: labels read only when needed, owners looked up only in
this cluster (the gateway is a fake here; the real one runs end to end)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from certfleet.api.spec import parse_cloudhost
from certfleet.controller.adapters import KubeTenancy
from certfleet.core.ownership import LocationOwner
from certfleet.kube.gateway import KubernetesGateway

SPEC = {
    "bucket": "b",
    "credentialsSecretRef": {"namespace": "certfleet-system", "name": "s3"},
    "encryptionKeySecretRef": {"namespace": "certfleet-system", "name": "key"},
}


class FakeGateway:
    def __init__(self) -> None:
        self.labels: dict[str, dict[str, str]] = {}
        self.uids: dict[tuple[str, str], str] = {}
        self.reads: list[str] = []

    def namespace_labels(self, namespace: str) -> Mapping[str, str] | None:
        self.reads.append(f"namespace {namespace}")
        return self.labels.get(namespace)

    def live_certificate_uid(self, namespace: str, name: str) -> str | None:
        self.reads.append(f"mcert {namespace}/{name}")
        return self.uids.get((namespace, name))


def tenancy(gateway: FakeGateway, cluster: str = "cluster-1") -> KubeTenancy:
    return KubeTenancy(cast(KubernetesGateway, gateway), "certfleet-system", cluster)


def test_a_listed_namespace_needs_no_read_and_a_label_admits_another() -> None:
    gateway = FakeGateway()
    listed = parse_cloudhost("prod", {**SPEC, "allowedNamespaces": ["shop"]})
    assert tenancy(gateway).admits(listed, "shop") and gateway.reads == []
    assert not tenancy(gateway).admits(listed, "other")
    gateway.labels["other"] = {"cloudhost.certfleet.io/prod": "allowed"}
    assert tenancy(gateway).admits(listed, "other")
    assert not tenancy(gateway).admits(listed, "missing")  # no such namespace


def test_an_owner_exists_while_its_uid_does_in_this_cluster() -> None:
    gateway = FakeGateway()
    owner = LocationOwner.resource("cluster-1", "shop", "www", "uid-1")
    gateway.uids[("shop", "www")] = "uid-1"
    assert tenancy(gateway).owner_exists(owner) is True
    gateway.uids[("shop", "www")] = "uid-2"  # deleted and applied again
    assert tenancy(gateway).owner_exists(owner) is False
    del gateway.uids[("shop", "www")]
    assert tenancy(gateway).owner_exists(owner) is False


def test_owners_it_cannot_see_are_not_guessed() -> None:
    gateway = FakeGateway()
    elsewhere = LocationOwner.resource("cluster-2", "shop", "www", "uid-1")
    assert tenancy(gateway).owner_exists(elsewhere) is None
    assert tenancy(gateway).owner_exists(LocationOwner.build_machines("prod")) is None
    unknown_cluster = LocationOwner.resource("", "shop", "www", "uid-1")
    assert tenancy(gateway, cluster="").owner_exists(unknown_cluster) is None
    assert gateway.reads == []
