"""The CloudHost and Secret reads a reconciliation repeats, from memory: what the watch said
at once, GETs only for what it did not say (yet), and nothing kept past its bound."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from certfleet.kube.caches import CLOUDHOST_MAX_AGE_SECONDS, SECRET_MAX_AGE_SECONDS, CachedReads
from certfleet.kube.gateway import SecretData


def cloudhost(bucket: str) -> dict[str, Any]:
    return {"metadata": {"name": "aws"}, "spec": {"bucket": bucket}}


@dataclass
class CountingGateway:
    """The API server's answers, and every GET asked of it."""

    cloudhosts: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    secrets: dict[tuple[str, str], SecretData] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)
    during_get: Any = None  # called in the middle of a GET (a watch event arriving meanwhile)

    def get_cloudhost(self, name: str) -> Mapping[str, Any] | None:
        self.asked.append(f"cloudhost {name}")
        found = self.cloudhosts.get(name)
        if self.during_get is not None:
            self.during_get()
        return found

    def read_secret(self, namespace: str, name: str) -> SecretData | None:
        self.asked.append(f"secret {namespace}/{name}")
        found = self.secrets.get((namespace, name))
        if self.during_get is not None:
            self.during_get()
        return found


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def secret(value: bytes) -> SecretData:
    return SecretData(type="Opaque", data={"key": value})


def test_a_cloudhost_the_watch_delivered_is_never_read_again() -> None:
    gateway = CountingGateway(cloudhosts={"aws": cloudhost("old")})
    reads = CachedReads(gateway, Clock())
    reads.observe_cloudhost("aws", cloudhost("watched"))
    for _ in range(100):
        assert reads.get_cloudhost("aws") == cloudhost("watched")
    assert gateway.asked == []


def test_a_cloudhost_not_delivered_yet_is_read_once_then_kept() -> None:
    gateway = CountingGateway(cloudhosts={"aws": cloudhost("b")})
    reads = CachedReads(gateway, Clock())
    for _ in range(100):
        assert reads.get_cloudhost("aws") == cloudhost("b")
        assert reads.get_cloudhost("gone") is None
    assert gateway.asked == ["cloudhost aws", "cloudhost gone"]


def test_a_changed_or_deleted_cloudhost_is_seen_at_once() -> None:
    gateway = CountingGateway(cloudhosts={"aws": cloudhost("old")})
    reads = CachedReads(gateway, Clock())
    assert reads.get_cloudhost("aws") == cloudhost("old")
    reads.observe_cloudhost("aws", cloudhost("new"))
    assert reads.get_cloudhost("aws") == cloudhost("new")
    reads.observe_cloudhost("aws", None)
    assert reads.get_cloudhost("aws") is None
    reads.observe_cloudhost("missing-before", cloudhost("created"))
    assert reads.get_cloudhost("missing-before") == cloudhost("created")
    assert gateway.asked == ["cloudhost aws"]


def test_a_cloudhost_is_read_again_after_its_bound() -> None:
    """kopf re-lists after a broken watch without telling what was deleted meanwhile."""
    clock = Clock()
    gateway = CountingGateway()
    reads = CachedReads(gateway, clock)
    reads.observe_cloudhost("aws", cloudhost("deleted-while-the-watch-was-down"))
    clock.now += CLOUDHOST_MAX_AGE_SECONDS - 1
    assert reads.get_cloudhost("aws") is not None
    clock.now += 1
    assert reads.get_cloudhost("aws") is None
    assert gateway.asked == ["cloudhost aws"]


def test_a_get_that_overlapped_a_watch_event_does_not_overwrite_it() -> None:
    gateway = CountingGateway(cloudhosts={"aws": cloudhost("before-the-change")})
    reads = CachedReads(gateway, Clock())
    gateway.during_get = lambda: reads.observe_cloudhost("aws", cloudhost("changed"))
    assert reads.get_cloudhost("aws") == cloudhost("before-the-change")  # what the GET said
    gateway.during_get = None
    assert reads.get_cloudhost("aws") == cloudhost("changed")
    assert gateway.asked == ["cloudhost aws"]


def test_a_secret_is_read_once_within_its_bound_then_again() -> None:
    clock = Clock()
    gateway = CountingGateway(secrets={("ops", "key"): secret(b"a")})
    reads = CachedReads(gateway, clock)
    for _ in range(100):
        assert reads.read_secret("ops", "key") == secret(b"a")
    gateway.secrets[("ops", "key")] = secret(b"rotated")
    clock.now += SECRET_MAX_AGE_SECONDS - 1
    assert reads.read_secret("ops", "key") == secret(b"a")
    clock.now += 1
    assert reads.read_secret("ops", "key") == secret(b"rotated")
    assert gateway.asked == ["secret ops/key"] * 2


def test_a_cloudhost_event_forgets_the_secrets_kept() -> None:
    """A person who rotated a Secret in place makes it count at once by touching the CloudHost;
    a CloudHost naming other Secrets is read with them."""
    gateway = CountingGateway(secrets={("ops", "key"): secret(b"a")})
    reads = CachedReads(gateway, Clock())
    assert reads.read_secret("ops", "key") == secret(b"a")
    gateway.secrets[("ops", "key")] = secret(b"rotated")
    reads.observe_cloudhost("aws", cloudhost("touched"))
    assert reads.read_secret("ops", "key") == secret(b"rotated")


def test_a_missing_secret_is_never_kept() -> None:
    """Creating the Secret a CloudHost names takes effect at the next reconciliation."""
    gateway = CountingGateway()
    reads = CachedReads(gateway, Clock())
    assert reads.read_secret("ops", "key") is None
    gateway.secrets[("ops", "key")] = secret(b"created")
    assert reads.read_secret("ops", "key") == secret(b"created")


def test_a_secret_read_that_overlapped_a_cloudhost_event_is_not_kept() -> None:
    gateway = CountingGateway(secrets={("ops", "key"): secret(b"a")})
    reads = CachedReads(gateway, Clock())
    gateway.during_get = lambda: reads.observe_cloudhost("aws", cloudhost("changed"))
    reads.read_secret("ops", "key")
    gateway.during_get = None
    reads.read_secret("ops", "key")
    assert gateway.asked == ["secret ops/key"] * 2
