"""The cache Secret's owners: every ManagedCertificate of its namespace naming the same
(domain, cloudhost, build), so the garbage collector deletes it with the last of them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from certfleet.api.spec import parse_certificate_spec
from certfleet.controller.adapters import SecretCache
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
