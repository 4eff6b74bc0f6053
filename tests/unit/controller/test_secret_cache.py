"""The cache Secret's owners: every ManagedCertificate of its namespace naming the same
(domain, cloudhost, build), so the garbage collector deletes it with the last of them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from certfleet.api.spec import cache_secret_name, parse_certificate_spec
from certfleet.controller.adapters import CacheOwners, SecretCache
from certfleet.controller.ports import PemPair
from certfleet.kube.gateway import KubernetesUnavailableError, OwnerReference
from unit.controller.resources import NAMESPACE, SPEC


@dataclass
class Written:
    owners: list[Sequence[OwnerReference]] = field(default_factory=list)

    def read(self, namespace: str, name: str) -> tuple[bytes, bytes] | None:
        return None

    def read_all(self, namespace: str, name: str) -> Mapping[str, bytes] | None:
        return None

    def write(
        self,
        namespace: str,
        name: str,
        fullchain: bytes | None,
        key: bytes | None,
        labels: Mapping[str, str],
        annotations: Mapping[str, str],
        owners: Sequence[OwnerReference] = (),
        extra: Mapping[str, bytes] | None = None,
        exists: bool = False,
    ) -> None:
        self.owners.append(owners)


@dataclass
class Listed:
    items: list[Mapping[str, Any]]
    failing: bool = False

    def list_certificates(self, namespace: str) -> list[Mapping[str, Any]]:
        if self.failing:
            raise KubernetesUnavailableError("the API server is away")
        return self.items


def resource(name: str, uid: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "uid": uid}, "spec": {**SPEC, **spec}}


PAIR = PemPair(b"chain", b"key")


def test_every_resource_of_the_same_location_owns_the_cache_secret() -> None:
    listed = Listed(
        [
            resource("web", "uid-1"),
            resource("web-copy", "uid-2", alternativeNames=["shop.example.com"]),
            resource("other-build", "uid-3", buildIdentifier="build-8"),
            resource("other-domain", "uid-4", domain="api.example.com"),
            {"metadata": {"name": "broken", "uid": "uid-5"}, "spec": {"domain": "-"}},
            {"metadata": "nonsense"},
        ]
    )
    written = Written()
    SecretCache(written, listed).write(NAMESPACE, parse_certificate_spec(SPEC), PAIR)
    assert written.owners == [
        [
            OwnerReference("certfleet.io/v1alpha1", "ManagedCertificate", "web", "uid-1"),
            OwnerReference("certfleet.io/v1alpha1", "ManagedCertificate", "web-copy", "uid-2"),
        ]
    ]


def test_a_failed_list_still_writes_the_cache_without_owners() -> None:
    written = Written()
    cache = SecretCache(written, Listed([resource("web", "uid-1")], failing=True))
    cache.write(NAMESPACE, parse_certificate_spec(SPEC), PAIR)
    assert written.owners == [[]]


def test_the_watchs_index_names_the_owners_without_a_list() -> None:
    index = CacheOwners()
    index.observe(NAMESPACE, "web", "uid-1", 1, resource("web", "uid-1")["spec"])
    index.observe(NAMESPACE, "copy", "uid-2", 1, resource("copy", "uid-2")["spec"])
    index.observe(
        NAMESPACE, "other", "uid-3", 1, resource("other", "", buildIdentifier="b-8")["spec"]
    )
    index.observe("elsewhere", "web", "uid-4", 1, resource("web", "uid-4")["spec"])
    index.observe(NAMESPACE, "broken", "uid-5", 1, {"domain": "-"})
    written, listed = Written(), Listed([], failing=True)  # a list would fail: none is asked
    SecretCache(written, listed, index).write(NAMESPACE, parse_certificate_spec(SPEC), PAIR)
    assert written.owners == [
        [
            OwnerReference("certfleet.io/v1alpha1", "ManagedCertificate", "copy", "uid-2"),
            OwnerReference("certfleet.io/v1alpha1", "ManagedCertificate", "web", "uid-1"),
        ]
    ]


def test_the_index_follows_spec_changes_and_deletions() -> None:
    index = CacheOwners()
    name = cache_secret_name(parse_certificate_spec(SPEC))
    assert index.changed(NAMESPACE, "web", "uid-1", 1)
    index.observe(NAMESPACE, "web", "uid-1", 1, resource("web", "uid-1")["spec"])
    assert not index.changed(NAMESPACE, "web", "uid-1", 1)  # a status patch: nothing new
    assert index.changed(NAMESPACE, "web", "uid-1", 2)
    index.observe(NAMESPACE, "web", "uid-1", 2, resource("web", "", buildIdentifier="b-8")["spec"])
    assert index.owners(NAMESPACE, name) == []
    index.observe(NAMESPACE, "web", "uid-1", 3, resource("web", "uid-1")["spec"])
    assert [owner.name for owner in index.owners(NAMESPACE, name)] == ["web"]
    index.observe(NAMESPACE, "web", "uid-1", 3, None)
    assert index.owners(NAMESPACE, name) == []
    assert index.changed(NAMESPACE, "web", "uid-1", 3)


def test_an_index_that_knows_no_owner_yet_falls_back_to_the_list() -> None:
    written = Written()
    cache = SecretCache(written, Listed([resource("web", "uid-1")]), CacheOwners())
    cache.write(NAMESPACE, parse_certificate_spec(SPEC), PAIR)
    assert [owner.name for owner in written.owners[0]] == ["web"]
