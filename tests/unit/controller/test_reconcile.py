"""The reconciler's flow with fakes at its edges: a dict of Secrets, the in-memory
datastore, a fake CA.

The order of DESIGN.md (datastore, then cache, then issue or wait), and the promise that a
certificate once issued is never lost nor ordered twice, are decided here, so they are tested
here without any server; tests/e2e prove the same on the real ones.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from cryptography import x509

from certfleet.api.spec import CertificateSpec, CloudHostConfig, cache_secret_name, parse_cloudhost
from certfleet.api.spec import parse_certificate_spec as parse_spec
from certfleet.api.status import CertificateStatus
from certfleet.controller.adapters import SecretCache, SecretSuppliedCertificates
from certfleet.controller.decide import DecisionSettings
from certfleet.controller.gather import DatastoreNotConfiguredError
from certfleet.controller.plan import Outcome, Request
from certfleet.controller.ports import PemPair, PendingOrder, Ports
from certfleet.controller.reconcile import OrderLease, Reconciler
from certfleet.controller.report import events_to_post, status_from_outcome
from certfleet.core.errors import CertfleetError, RetryLaterError
from certfleet.core.ownership import LocationOwner
from certfleet.datastore.encryption import MasterKey
from certfleet.datastore.errors import DatastoreNotSupportedError, DatastoreUnavailableError
from certfleet.datastore.location import DatastoreLocation
from certfleet.datastore.memory import InMemoryDatastore
from certfleet.datastore.protocol import Datastore, LeaseTaken
from certfleet.kube.gateway import KubernetesUnavailableError, OwnerReference
from unit.controller.resources import BUCKET, CLOUDHOST, DOMAIN, MANUAL_SPEC, NAMESPACE, SPEC
from unit.core.certificates import DAY, NOW, ec_key, issue, key_pem, pem, pki

OWNER = LocationOwner.resource("cluster-1", NAMESPACE, "www", "uid-1")


def certificate(
    not_before: datetime = NOW - DAY,
    not_after: datetime = NOW + 89 * DAY,
    names: Sequence[str] = (DOMAIN,),
    key: int = 9,
) -> tuple[bytes, bytes]:
    authority = pki("ec")
    leaf = authority.leaf(*names, key=ec_key(n=key), not_before=not_before, not_after=not_after)
    return pem(leaf.cert, authority.intermediate.cert), key_pem(leaf.key)


def untrusted(self_signed: bool = False) -> tuple[bytes, bytes]:
    """A certificate for DOMAIN from a CA the CloudHost does not trust (or nobody's)."""
    if self_signed:
        leaf = issue(subject=DOMAIN, key=ec_key(n=9), dns_names=[DOMAIN])
        return pem(leaf.cert), key_pem(leaf.key)
    other = pki("ec", 1)
    leaf = other.leaf(DOMAIN, key=ec_key(n=9), not_before=NOW - DAY, not_after=NOW + 89 * DAY)
    return pem(leaf.cert, other.intermediate.cert, other.root.cert), key_pem(leaf.key)


class DictSecrets:
    """kubernetes.io/tls Secrets: the pair in `items`, any other keys in `extra` (merged on
    write, as a patch of the API server merges them)."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], tuple[bytes, bytes]] = {}
        self.extra: dict[tuple[str, str], dict[str, bytes]] = {}
        self.fail_writes = False
        self.fail_certificate_writes = False  # writes of a pair only (not of an order alone)

    def read(self, namespace: str, name: str) -> tuple[bytes, bytes] | None:
        return self.items.get((namespace, name))

    def read_all(self, namespace: str, name: str) -> Mapping[str, bytes] | None:
        pair = self.items.get((namespace, name))
        if pair is None:
            return None
        return {"tls.crt": pair[0], "tls.key": pair[1], **self.extra.get((namespace, name), {})}

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
        if self.fail_writes or (self.fail_certificate_writes and fullchain):
            raise KubernetesUnavailableError("the API server did not answer")
        kept = self.items.get((namespace, name), (b"", b""))
        # A pair of None keeps the Secret's own, as a patch of the other keys does.
        self.items[(namespace, name)] = (
            kept if fullchain is None or key is None else (fullchain, key)
        )
        self.extra.setdefault((namespace, name), {}).update(extra or {})


@dataclass
class FakeIssuer:
    next_certificate: tuple[bytes, bytes] = field(default_factory=certificate)
    fail: bool = False
    retry_after: float | None = None
    orders: int = 0
    replaced: list[bytes | None] = field(default_factory=list)
    asked: list[CertificateSpec] = field(default_factory=list)

    def issue(
        self,
        spec: CertificateSpec,
        namespace: str,
        replacing: bytes | None,
        resume: PendingOrder | None = None,
        placed: Callable[[PendingOrder], None] | None = None,
    ) -> PemPair:
        self.orders += 1
        self.asked.append(spec)
        self.replaced.append(replacing)
        if self.retry_after is not None:
            raise RetryLaterError("rate limited", self.retry_after)
        if self.fail:
            raise CertfleetError("the CA is down")
        return PemPair(*self.next_certificate)


class FlakyDatastore(InMemoryDatastore):
    """Publishing fails while `publish_down` is set, as when S3 goes away mid-reconciliation;
    its clock is `clock_now`."""

    clock_now = NOW

    def __init__(self) -> None:
        super().__init__(lambda: self.clock_now)

    publish_down = False
    publish_error: BaseException | None = None  # test_resume's kills too

    def publish(self, *args: Any, **kwargs: Any) -> Any:
        if self.publish_down:
            raise DatastoreUnavailableError("S3 did not answer")
        if self.publish_error is not None:
            raise self.publish_error
        return super().publish(*args, **kwargs)


@dataclass
class FakeWorld:
    """The controller's ports over dicts and the in-memory datastore; the Secret-backed
    ports are the real adapters over a dict of Secrets."""

    store: FlakyDatastore = field(default_factory=FlakyDatastore)
    secrets: DictSecrets = field(default_factory=DictSecrets)
    ca: FakeIssuer = field(default_factory=FakeIssuer)
    cloudhosts: dict[str, Mapping[str, Any]] = field(default_factory=lambda: {"aws": CLOUDHOST})
    ari_window: tuple[datetime, datetime] | None = None  # what the CA's ARI suggests
    ari_asked: list[bytes] = field(default_factory=list)
    ari_servers: list[str] = field(default_factory=list)  # whose window was asked
    announced: list[str] = field(default_factory=list)
    # The Tenancy port: namespaces the CloudHosts refuse, owners that exist (else unknown).
    refused_namespaces: set[str] = field(default_factory=set)
    owners: dict[LocationOwner, bool] = field(default_factory=dict)

    def admits(self, cloudhost: CloudHostConfig, namespace: str) -> bool:
        return namespace not in self.refused_namespaces

    def owner_exists(self, owner: LocationOwner) -> bool | None:
        return self.owners.get(owner)

    def datastore(self, cloudhost: str) -> tuple[CloudHostConfig, Datastore]:
        if cloudhost not in self.cloudhosts:
            raise DatastoreNotConfiguredError(f"CloudHost {cloudhost!r} does not exist")
        return parse_cloudhost(cloudhost, self.cloudhosts[cloudhost]["spec"]), self.store

    def window(
        self, spec: CertificateSpec, certificate_pem: bytes
    ) -> tuple[datetime, datetime] | None:
        self.ari_asked.append(certificate_pem)
        self.ari_servers.append(spec.acme.server if spec.acme else "")
        return self.ari_window

    def roots(self, cloudhost: CloudHostConfig) -> tuple[x509.Certificate, ...]:
        return (pki("ec").root.cert,)  # what the fake CA's chains lead to

    def ports(self) -> Ports:
        return Ports(
            datastores=self,
            cache=SecretCache(self.secrets),
            supplied=SecretSuppliedCertificates(self.secrets),
            issuer=self.ca,
            windows=self,
            tenancy=self,
            trust=self,
        )

    # The Reporter port: what the status would be told.
    def issuing(self, message: str) -> None:
        self.announced.append(message)

    def report(self, outcome: Outcome) -> None:
        pass


@pytest.fixture
def world() -> FakeWorld:
    return FakeWorld()


def reconcile(
    world: FakeWorld,
    spec: Mapping[str, Any] = SPEC,
    now: datetime = NOW,
    previous_failures: int = 0,
    force_renewal: bool = False,
    owner: LocationOwner = OWNER,
    take_over_from: str | None = None,
    namespace: str = NAMESPACE,
) -> Outcome:
    settings = DecisionSettings(
        retry_seconds=7,
        manual_poll_seconds=3,
        issuance_backoff_base_seconds=5,
        issuance_backoff_cap_seconds=40,
    )
    request = Request(
        namespace,
        spec,
        previous_failures=previous_failures,
        force_renewal=force_renewal,
        owner=owner,
        take_over_from=take_over_from,
    )
    return Reconciler(world.ports(), lambda: now, settings).reconcile(request, world)


def typed(status: Mapping[str, Any]) -> CertificateStatus:
    return CertificateStatus.from_dict(status)


def published(world: FakeWorld) -> tuple[bytes, bytes] | None:
    location = DatastoreLocation(BUCKET, "certfleet", "aws", "build-7", DOMAIN)
    stored = world.store.read_current(location)
    return (stored.fullchain, stored.privkey) if stored else None


def cached(world: FakeWorld, spec: Mapping[str, Any] = SPEC) -> tuple[bytes, bytes] | None:
    return world.secrets.read(NAMESPACE, cache_secret_name(parse_spec(spec)))


def test_issues_caches_and_publishes_when_nothing_is_stored(world: FakeWorld) -> None:
    outcome = reconcile(world)
    assert (outcome.ready, outcome.reason) == (True, "Issued")
    assert world.ca.orders == 1
    assert published(world) == world.ca.next_certificate == cached(world)
    assert outcome.revision == 1 and outcome.retry_after is None
    reasons = [event.reason for event in outcome.events]
    assert reasons == ["LocationOwned", "Issued", "Published"]


def test_datastore_first_reuses_a_valid_certificate_without_an_order(world: FakeWorld) -> None:
    reconcile(world)
    world.secrets.items.clear()  # a fresh cluster: no cache

    outcome = reconcile(world)
    assert (outcome.ready, outcome.reason, outcome.revision) == (True, "Reused", 1)
    assert world.ca.orders == 1
    assert cached(world) == published(world), "the cluster cache is restored from S3"


def test_cache_second_is_published_when_the_datastore_is_empty(world: FakeWorld) -> None:
    pair = certificate()
    world.secrets.items[(NAMESPACE, cache_secret_name(parse_spec(SPEC)))] = pair

    outcome = reconcile(world)
    assert (outcome.ready, outcome.reason) == (True, "RestoredFromCache")
    assert world.ca.orders == 0
    assert published(world) == pair


def test_a_failed_publish_never_costs_a_second_order(world: FakeWorld) -> None:
    world.store.publish_down = True
    failed = reconcile(world)
    # After an order, even a datastore outage goes through the issuance back-off (base 5 s).
    assert (failed.ready, failed.reason, failed.retry_after) == (False, "DatastoreUnavailable", 5)
    assert failed.issuance_failed
    assert cached(world) == world.ca.next_certificate, "the new key was lost"

    world.store.publish_down = False
    world.ca.next_certificate = certificate(names=("other.example.com",))  # must not be used
    outcome = reconcile(world)
    assert (outcome.ready, outcome.reason) == (True, "RestoredFromCache")
    assert world.ca.orders == 1


def test_renewal_due_issues_a_new_revision(world: FakeWorld) -> None:
    reconcile(world)
    later = NOW + 83 * DAY  # 6 days before expiry: inside the 7-day threshold
    world.ca.next_certificate = certificate(NOW + 82 * DAY, NOW + 172 * DAY)

    outcome = reconcile(world, now=later)
    assert (outcome.ready, outcome.reason, outcome.revision) == (True, "Issued", 2)
    assert published(world) == world.ca.next_certificate


def test_failed_renewal_keeps_the_old_certificate_ready(world: FakeWorld) -> None:
    reconcile(world)
    world.ca.fail = True
    outcome = reconcile(world, now=NOW + 83 * DAY)
    assert (outcome.ready, outcome.reason) == (True, "IssuanceFailed")
    assert outcome.issuance_failed and outcome.retry_after == 5
    assert outcome.revision == 1


def test_failed_first_issuance_is_not_ready(world: FakeWorld) -> None:
    world.ca.fail = True
    outcome = reconcile(world)
    assert (outcome.ready, outcome.reason, outcome.issuance_failed) == (
        False,
        "IssuanceFailed",
        True,
    )
    assert "the CA is down" in outcome.message
    assert published(world) is None


def test_manual_waits_for_its_secret(world: FakeWorld) -> None:
    outcome = reconcile(world, MANUAL_SPEC)
    assert (outcome.ready, outcome.reason, outcome.retry_after) == (
        False,
        "WaitingForManualCertificate",
        3,
    )
    assert world.ca.orders == 0


@pytest.mark.parametrize(
    ("supplied", "reason"),
    [
        (lambda: (certificate()[0], certificate(key=3)[1]), "KeyMismatch"),
        (lambda: certificate(NOW - 100 * DAY, NOW - DAY), "Expired"),
        (lambda: certificate(names=("shop.example.org",)), "NameMismatch"),
        (lambda: (b"garbage", certificate()[1]), "InvalidPEM"),
        (lambda: untrusted(), "UntrustedChain"),
        (lambda: untrusted(self_signed=True), "UntrustedChain"),
        (
            lambda: (
                certificate()[0].split(b"-----END CERTIFICATE-----")[0]
                + b"-----END CERTIFICATE-----\n",
                certificate()[1],
            ),
            "UntrustedChain",
        ),
    ],
    ids=["wrong-key", "expired", "wrong-name", "garbage", "another-ca", "self-signed", "leaf-only"],
)
def test_manual_refuses_a_bad_secret_and_publishes_nothing(
    world: FakeWorld, supplied: Any, reason: str
) -> None:
    world.secrets.items[(NAMESPACE, "supplied")] = supplied()
    outcome = reconcile(world, MANUAL_SPEC)
    assert (outcome.ready, outcome.reason) == (False, reason)
    assert "supplied" in outcome.message and "PRIVATE KEY" not in outcome.message
    assert published(world) is None


def test_a_ca_answer_that_does_not_chain_to_the_roots_is_never_published(
    world: FakeWorld,
) -> None:
    world.ca.next_certificate = untrusted()
    outcome = reconcile(world)
    assert (outcome.ready, outcome.reason) == (False, "UntrustedChain")
    assert outcome.issuance_failed and published(world) is None


def test_manual_accepts_a_valid_secret(world: FakeWorld) -> None:
    pair = certificate()
    world.secrets.items[(NAMESPACE, "supplied")] = pair
    outcome = reconcile(world, MANUAL_SPEC)
    assert (outcome.ready, outcome.reason) == (True, "ManualCertificateAccepted")
    assert published(world) == pair


def test_manual_is_never_renewed_only_reported(world: FakeWorld) -> None:
    world.secrets.items[(NAMESPACE, "supplied")] = certificate()
    reconcile(world, MANUAL_SPEC)
    outcome = reconcile(world, MANUAL_SPEC, now=NOW + 83 * DAY)
    assert (outcome.ready, outcome.reason) == (True, "ManualRenewalRequired")
    assert world.ca.orders == 0


def test_invalid_spec_and_missing_cloudhost_are_reported(world: FakeWorld) -> None:
    invalid = reconcile(world, {**SPEC, "domain": "xn--zz.example.com"})
    assert (invalid.ready, invalid.reason, invalid.retry_after) == (False, "InvalidSpec", None)
    missing = reconcile(world, {**SPEC, "cloudhost": "nowhere"})
    assert (missing.ready, missing.reason, missing.retry_after) == (
        False,
        "DatastoreNotConfigured",
        7,
    )
    assert "nowhere" in missing.message


def test_status_keeps_transition_time_and_counts_failures(world: FakeWorld) -> None:
    world.ca.fail = True
    first = status_from_outcome(reconcile(world), typed({}), 1, NOW)
    second = status_from_outcome(reconcile(world), typed(first), 1, NOW + DAY)
    assert (
        second["conditions"][0]["lastTransitionTime"]
        == first["conditions"][0]["lastTransitionTime"]
    )
    assert (first["failedIssuanceAttempts"], second["failedIssuanceAttempts"]) == (1, 2)

    world.ca.fail = False
    ready = status_from_outcome(reconcile(world), typed(second), 1, NOW + 2 * DAY)
    assert ready["conditions"][0]["status"] == "True"
    assert (
        ready["conditions"][0]["lastTransitionTime"] != first["conditions"][0]["lastTransitionTime"]
    )
    assert ready["failedIssuanceAttempts"] == 0
    assert ready["serialNumber"] and ready["renewalTime"] and ready["datastore"]["revision"] == 1


def test_failed_issuances_back_off_exponentially_up_to_the_cap(world: FakeWorld) -> None:
    world.ca.fail = True
    delays = [reconcile(world, previous_failures=n).retry_after for n in range(6)]
    assert delays == [5, 10, 20, 40, 40, 40]


def test_a_rate_limit_retry_after_is_honoured(world: FakeWorld) -> None:
    world.ca.retry_after = 3600
    outcome = reconcile(world)
    assert (outcome.reason, outcome.retry_after) == ("IssuanceFailed", 3600)


def test_renew_now_replaces_a_valid_certificate(world: FakeWorld) -> None:
    reconcile(world)
    world.ca.next_certificate = certificate(key=4)
    outcome = reconcile(world, force_renewal=True)
    assert (outcome.ready, outcome.reason, outcome.revision) == (True, "Issued", 2)
    assert world.ca.orders == 2
    assert published(world) == world.ca.next_certificate


def test_failed_renew_now_keeps_serving_the_valid_certificate(world: FakeWorld) -> None:
    reconcile(world)
    world.ca.fail = True
    outcome = reconcile(world, force_renewal=True)
    assert (outcome.ready, outcome.reason, outcome.revision) == (True, "IssuanceFailed", 1)


def test_an_ari_window_in_the_past_makes_a_valid_certificate_due_now(world: FakeWorld) -> None:
    first = reconcile(world)
    assert first.renew_at is not None and first.renew_at > NOW + 50 * DAY
    # The CA asks for renewal now (RFC 9773: a window in the past), e.g. after a revocation.
    world.ari_window = (NOW - DAY, NOW - DAY / 2)
    old = published(world)
    world.ca.next_certificate = certificate(key=4)

    outcome = reconcile(world)
    assert (outcome.ready, outcome.reason, outcome.revision) == (True, "Issued", 2)
    assert world.ca.orders == 2
    assert published(world) == world.ca.next_certificate
    assert old is not None and world.ca.replaced == [None, old[0]], (
        "the renewal names its predecessor"
    )


def test_an_ari_window_brings_the_renewal_time_earlier_but_never_later(world: FakeWorld) -> None:
    plain = reconcile(world).renew_at  # 7 days before expiry: NOW + 82 days
    assert plain is not None
    world.ari_window = (NOW + 40 * DAY, NOW + 42 * DAY)
    earlier = reconcile(world)
    assert (earlier.reason, earlier.renew_at) == ("Reused", NOW + 41 * DAY)  # the midpoint
    world.ari_window = (NOW + 84 * DAY, NOW + 88 * DAY)  # after the rule
    assert reconcile(world).renew_at == plain
    assert world.ca.orders == 1


def test_no_ari_window_changes_nothing(world: FakeWorld) -> None:
    first = reconcile(world)
    again = reconcile(world)
    assert (again.reason, again.renew_at, world.ca.orders) == ("Reused", first.renew_at, 1)
    assert world.ari_asked, "the CA was asked"


def test_a_fresh_certificate_shows_its_ari_renewal_time_at_once(world: FakeWorld) -> None:
    world.ari_window = (NOW + 10 * DAY, NOW + 12 * DAY)
    assert reconcile(world).renew_at == NOW + 11 * DAY


def test_a_window_that_makes_a_fresh_certificate_due_is_not_obeyed_at_once(
    world: FakeWorld,
) -> None:
    world.ari_window = (NOW - DAY, NOW - DAY / 2)  # a confused CA: renew the new one now
    outcome = reconcile(world)
    assert (outcome.ready, outcome.reason, world.ca.orders) == (True, "Issued", 1)
    assert outcome.renew_at is not None and outcome.renew_at > NOW + 50 * DAY


def test_manual_certificates_never_ask_a_ca(world: FakeWorld) -> None:
    world.secrets.items[(NAMESPACE, "supplied")] = certificate()
    world.ari_window = (NOW - DAY, NOW - DAY / 2)
    outcome = reconcile(world, MANUAL_SPEC)
    assert (outcome.ready, outcome.reason) == (True, "ManualCertificateAccepted")
    assert reconcile(world, MANUAL_SPEC).reason == "Reused"
    assert world.ari_asked == []


def test_a_repeated_state_is_announced_once(world: FakeWorld) -> None:
    first = reconcile(world, MANUAL_SPEC)
    status = status_from_outcome(first, typed({}), 1, NOW)
    told = [e.reason for e in events_to_post(first, typed({}))]
    assert told == ["LocationOwned", "WaitingForManualCertificate"]
    again = reconcile(world, MANUAL_SPEC)
    assert events_to_post(again, typed(status)) == ()

    world.secrets.items[(NAMESPACE, "supplied")] = certificate()
    accepted = reconcile(world, MANUAL_SPEC)
    assert [e.reason for e in events_to_post(accepted, typed(status))] == ["Published"]


def test_a_failed_cache_write_after_an_order_still_publishes(world: FakeWorld) -> None:
    world.secrets.fail_writes = True
    outcome = reconcile(world)
    assert (outcome.ready, outcome.reason) == (True, "Issued")
    assert published(world) == world.ca.next_certificate, "the issued certificate was lost"
    assert "CacheWriteFailed" in [event.reason for event in outcome.events]
    world.secrets.fail_writes = False
    again = reconcile(world)
    assert again.reason == "Reused" and cached(world) == published(world)
    assert world.ca.orders == 1


def test_a_certificate_the_policy_rejects_backs_off_exponentially(world: FakeWorld) -> None:
    world.ca.next_certificate = certificate(names=("other.example.com",))
    delays = [reconcile(world, previous_failures=n) for n in range(3)]
    assert [o.reason for o in delays] == ["NameMismatch"] * 3
    assert [o.retry_after for o in delays] == [5, 10, 20]
    assert all(o.issuance_failed for o in delays)


def test_renew_now_after_a_failed_publish_publishes_the_new_certificate(world: FakeWorld) -> None:
    reconcile(world)
    world.store.publish_down = True
    world.ca.next_certificate = certificate(NOW, NOW + 90 * DAY, key=4)  # newer than the first
    failed = reconcile(world, force_renewal=True)
    assert failed.issuance_failed and world.ca.orders == 2

    world.store.publish_down = False
    outcome = reconcile(world, force_renewal=True)
    assert (outcome.ready, outcome.reason) == (True, "RestoredFromCache")
    assert world.ca.orders == 2, "renew-now ordered a second new certificate"
    assert published(world) == world.ca.next_certificate


def test_a_broken_pointer_falls_through_to_the_cache_and_is_replaced(world: FakeWorld) -> None:
    reconcile(world)
    location = DatastoreLocation(BUCKET, "certfleet", "aws", "build-7", DOMAIN)
    world.store.break_pointer(location)  # a corrupt current.json, or an unknown master key
    outcome = reconcile(world)
    assert (outcome.ready, outcome.reason, outcome.revision) == (True, "RestoredFromCache", 2)
    assert "DatastoreIntegrity" in [event.reason for event in outcome.events]
    assert published(world) == cached(world) and world.ca.orders == 1


def test_an_s3_provider_without_conditional_writes_is_a_configuration_answer(
    world: FakeWorld,
) -> None:
    world.store.publish_error = DatastoreNotSupportedError("PutObject: NotImplemented (HTTP 501)")
    world.secrets.items[(NAMESPACE, cache_secret_name(parse_spec(SPEC)))] = certificate()
    world.store.claim(LOCATION, OWNER, NOW, None)  # claimed before the provider changed
    outcome = reconcile(world)
    assert (outcome.ready, outcome.reason, outcome.retry_after) == (
        False,
        "DatastoreNotSupported",
        None,
    )
    assert [event.type for event in outcome.events] == ["Warning"]


def test_a_failed_cache_write_does_not_make_a_published_certificate_unready(
    world: FakeWorld,
) -> None:
    reconcile(world)
    world.secrets.items.clear()
    world.secrets.fail_writes = True
    outcome = reconcile(world)
    assert (outcome.ready, outcome.reason) == (True, "Reused")
    assert [event.reason for event in outcome.events] == ["CacheWriteFailed"]


def test_old_revisions_go_after_a_publish_beyond_the_history_limit(world: FakeWorld) -> None:
    world.cloudhosts["aws"] = {"spec": {**CLOUDHOST["spec"], "revisionHistoryLimit": 1}}
    for day in range(4):  # four renewals, a day apart (the grace is an hour)
        world.ca.next_certificate = certificate(NOW + day * DAY, NOW + (day + 90) * DAY, key=day)
        world.store.clock_now = NOW + day * DAY
        reconcile(world, now=NOW + day * DAY, force_renewal=True)
    location = DatastoreLocation(BUCKET, "certfleet", "aws", "build-7", DOMAIN)
    assert sorted(world.store.revisions(location)) == [3, 4], "the current and one below it"


# -- the order lease: several certfleets sharing one datastore order once ---------------------

LOCATION = DatastoreLocation(BUCKET, "certfleet", "aws", "build-7", DOMAIN)


def test_an_order_takes_the_lease_and_gives_it_back(world: FakeWorld) -> None:
    outcome = reconcile(world)
    assert outcome.reason == "Issued" and world.store.leases_taken == 1
    assert isinstance(world.store.take_lease(LOCATION, "other", NOW, timedelta(1)), LeaseTaken)


def test_a_reuse_takes_no_lease(world: FakeWorld) -> None:
    reconcile(world)
    assert reconcile(world).reason == "Reused"
    assert world.store.leases_taken == 1


def test_a_lease_held_elsewhere_waits_instead_of_ordering(world: FakeWorld) -> None:
    world.store.take_lease(LOCATION, "build-b", NOW, timedelta(minutes=10))
    outcome = reconcile(world)
    assert (outcome.ready, outcome.reason) == (False, "OrderedElsewhere")
    assert world.ca.orders == 0 and outcome.retry_after == 7
    assert "build-b holds the order lease" in outcome.message


class LoggedLeases(FlakyDatastore):
    """Writes "release" to `log` when the lease is given back."""

    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log

    def release_lease(self, *args: Any, **kwargs: Any) -> None:
        self.log.append("release")
        super().release_lease(*args, **kwargs)


@dataclass
class ReportingWorld(FakeWorld):
    """Writes "report" to `log` when the outcome is reported; `report_error` makes the
    report fail (the API server went away)."""

    log: list[str] = field(default_factory=list)
    report_error: Exception | None = None

    def report(self, outcome: Outcome) -> None:
        self.log.append("report")
        if self.report_error is not None:
            raise self.report_error


def logged_world() -> ReportingWorld:
    log: list[str] = []
    return ReportingWorld(store=LoggedLeases(log), log=log)


def test_the_outcome_is_reported_before_the_lease_is_given_back() -> None:
    world = logged_world()
    assert reconcile(world).reason == "Issued"
    assert world.log == ["report", "release"]
    assert isinstance(world.store.take_lease(LOCATION, "other", NOW, timedelta(1)), LeaseTaken)


def test_a_failed_report_still_gives_the_lease_back() -> None:
    world = logged_world()
    world.report_error = KubernetesUnavailableError("the API server did not answer")
    with pytest.raises(KubernetesUnavailableError):
        reconcile(world)
    assert world.log == ["report", "release"]


def test_an_order_that_crashes_gives_the_lease_back(monkeypatch: pytest.MonkeyPatch) -> None:
    world = logged_world()

    def crash(*_args: Any, **_kwargs: Any) -> PemPair:
        raise RuntimeError("a bug in the issuer")

    monkeypatch.setattr(world.ca, "issue", crash)
    with pytest.raises(RuntimeError):
        reconcile(world)
    assert world.log == ["release"]
    assert isinstance(world.store.take_lease(LOCATION, "other", NOW, timedelta(1)), LeaseTaken)


class PublishedMeanwhile(FlakyDatastore):
    """Another machine publishes between this one's first look and its lease."""

    other: tuple[bytes, bytes] | None = None

    def take_lease(self, *args: Any, **kwargs: Any) -> Any:
        if self.other is not None:
            fullchain, key = self.other
            self.other = None
            self.publish(LOCATION, fullchain, key, "1", NOW - DAY, NOW + 89 * DAY, None)
        return super().take_lease(*args, **kwargs)


def test_after_taking_the_lease_a_certificate_published_meanwhile_is_reused() -> None:
    store = PublishedMeanwhile()
    store.other = certificate(key=3)
    world = FakeWorld(store=store)
    outcome = reconcile(world)
    assert outcome.reason == "Reused" and world.ca.orders == 0
    assert world.announced == []  # no order was announced either


def test_a_lease_left_by_a_killed_run_of_the_same_holder_is_taken_at_once(
    world: FakeWorld,
) -> None:
    world.store.take_lease(LOCATION, "operator certfleet-system/certfleet-operator", NOW, DAY)
    reconciler = Reconciler(
        world.ports(), lambda: NOW, lease=OrderLease("operator certfleet-system/certfleet-operator")
    )
    outcome = reconciler.reconcile(Request(NAMESPACE, SPEC, owner=OWNER), world)
    assert outcome.reason == "Issued" and world.ca.orders == 1


FALLBACK_SPEC = {
    **SPEC,
    "acme": {
        "server": "https://first.example/dir",
        "fallbackServers": ["https://second.example/dir"],
        "externalAccountBinding": {
            "keyID": "kid-1",
            "hmacKeySecretRef": {"name": "eab", "key": "hmac"},
        },
    },
}


def test_the_first_server_gets_the_order_with_its_binding_and_the_status_names_it(
    world: FakeWorld,
) -> None:
    outcome = reconcile(world, FALLBACK_SPEC)
    acme = world.ca.asked[-1].acme
    assert acme is not None and acme.server == "https://first.example/dir"
    assert acme.eab_key_id == "kid-1" and acme.fallback_servers == ()
    assert outcome.issued_by == ("https://first.example/dir", 0)
    status = status_from_outcome(outcome, typed({}), 1, NOW)
    assert status["issuedBy"] == {"server": "https://first.example/dir", "position": 0}


def test_a_server_that_kept_failing_falls_back_with_an_event_and_the_status_says_so(
    world: FakeWorld,
) -> None:
    outcome = reconcile(world, FALLBACK_SPEC, previous_failures=2)
    acme = world.ca.asked[-1].acme
    assert acme is not None and acme.server == "https://second.example/dir"
    assert acme.eab_key_id is None and acme.eab_hmac_secret is None  # the first CA's binding
    assert (outcome.ready, outcome.reason) == (True, "Issued")
    assert outcome.issued_by == ("https://second.example/dir", 1)
    # The first reconciliation claims the location, then falls back.
    assert [event.reason for event in outcome.events] == [
        "LocationOwned",
        "AcmeServerFallback",
        "Issued",
        "Published",
    ]
    assert "https://first.example/dir failed 2 time(s)" in outcome.events[1].message
    status = status_from_outcome(outcome, typed({}), 1, NOW)
    assert status["issuedBy"] == {"server": "https://second.example/dir", "position": 1}
    assert status["failedIssuanceAttempts"] == 0
    assert world.ari_servers == ["https://second.example/dir"]  # the CA that issued it


def test_a_failing_fallback_still_says_it_fell_back_and_names_no_issuer(
    world: FakeWorld,
) -> None:
    world.ca.fail = True
    outcome = reconcile(world, FALLBACK_SPEC, previous_failures=2)
    assert (outcome.ready, outcome.issuance_failed, outcome.issued_by) == (False, True, None)
    assert [event.reason for event in outcome.events] == [
        "LocationOwned",
        "AcmeServerFallback",
        "IssuanceFailed",
    ]
    assert "issuing through ACME at https://second.example/dir failed" in outcome.message
    assert "issuedBy" not in status_from_outcome(outcome, typed({}), 1, NOW)
    # The next failure stays at the fallback, without another fallback event.
    world.ca.fail = False
    again = reconcile(world, FALLBACK_SPEC, previous_failures=3)
    assert [event.reason for event in again.events] == ["Issued", "Published"]
    assert again.issued_by == ("https://second.example/dir", 1)


def test_a_manual_certificate_names_no_acme_issuer(world: FakeWorld) -> None:
    world.secrets.items[(NAMESPACE, "supplied")] = certificate()
    outcome = reconcile(world, MANUAL_SPEC)
    assert outcome.reason == "ManualCertificateAccepted"
    assert status_from_outcome(outcome, typed({}), 1, NOW)["issuedBy"] is None


# -- pointer trust: rollbacks and master-key rotation ------------------------------------------

LOCATION = DatastoreLocation(BUCKET, "certfleet", "aws", "build-7", DOMAIN)


def reconcile_after(world: FakeWorld, before: Outcome, spec: Mapping[str, Any] = SPEC) -> Outcome:
    """The next reconciliation, told what the status says of the one before."""
    status = typed(status_from_outcome(before, CertificateStatus(), 1, NOW))
    request = Request(
        NAMESPACE,
        spec,
        highest_revision=status.datastore_revision,
        highest_revision_uri=status.datastore_uri,
        owner=OWNER,
    )
    return Reconciler(world.ports(), lambda: NOW).reconcile(request, world)


def test_a_rolled_back_pointer_is_not_reused_and_is_published_over_above_the_highest(
    world: FakeWorld,
) -> None:
    reconcile(world)
    old_pointer = world.store.pointer_bytes(LOCATION)
    assert old_pointer is not None
    renewed = reconcile(world, force_renewal=True)  # revision 2, a new certificate
    assert renewed.revision == 2
    world.store.overwrite_pointer(LOCATION, old_pointer)  # revision 1 put back

    outcome = reconcile_after(world, renewed)
    assert (outcome.ready, outcome.reason, outcome.revision) == (True, "RestoredFromCache", 3)
    assert "RolledBack" in [event.reason for event in outcome.events]
    assert published(world) == cached(world), "the newest certificate is published again"
    assert outcome.facts is not None and renewed.facts is not None
    assert outcome.facts.serial == renewed.facts.serial, "the rolled-back one was taken"
    assert world.ca.orders == 2


def test_a_rolled_back_pointer_without_a_cache_is_never_reused(world: FakeWorld) -> None:
    reconcile(world)
    old_pointer = world.store.pointer_bytes(LOCATION)
    assert old_pointer is not None
    renewed = reconcile(world, force_renewal=True)
    world.store.overwrite_pointer(LOCATION, old_pointer)
    world.secrets.items.clear()  # no cache: a new certificate is the only safe one

    outcome = reconcile_after(world, renewed)
    assert (outcome.reason, outcome.revision) == ("Issued", 3)
    assert world.ca.orders == 3


def test_publishing_goes_above_the_highest_revision_even_into_an_emptied_location(
    world: FakeWorld,
) -> None:
    first = reconcile(world)
    world.store = FlakyDatastore()  # the location was wiped (a new bucket, a person)
    outcome = reconcile_after(world, dataclasses.replace(first, revision=7))
    assert (outcome.reason, outcome.revision) == ("RestoredFromCache", 8)


def test_the_highest_revision_of_another_location_does_not_count(world: FakeWorld) -> None:
    reconcile(world)
    moved = {**SPEC, "buildIdentifier": "build-8"}
    before = Outcome(True, "Reused", "", datastore_uri="s3://elsewhere/", revision=40)
    first_there = reconcile_after(world, before, moved)
    assert first_there.revision == 1


def test_an_unauthenticated_pointer_is_replaced_with_its_reason(world: FakeWorld) -> None:
    reconcile(world)
    data = world.store.pointer_bytes(LOCATION)
    assert data is not None
    document = json.loads(data)
    del document["mac"]
    world.store.overwrite_pointer(LOCATION, json.dumps(document).encode())

    outcome = reconcile(world)
    assert (outcome.ready, outcome.reason, outcome.revision) == (True, "RestoredFromCache", 2)
    assert "PointerUnauthenticated" in [event.reason for event in outcome.events]
    assert world.ca.orders == 1


def test_a_master_key_rotation_reseals_the_certificate_once(world: FakeWorld) -> None:
    old, new = MasterKey(os.urandom(32)), MasterKey(os.urandom(32))
    world.store.master_keys = [old]
    first = reconcile(world)
    world.store.master_keys = [new, old]  # the CloudHost names new, old as previous

    resealed = reconcile(world)
    assert (resealed.ready, resealed.reason, resealed.revision) == (True, "Resealed", 2)
    stored = world.store.read_current(LOCATION)
    assert stored is not None and stored.pointer.key_id == new.key_id_hex
    assert stored.sealed_with_current_key
    assert resealed.facts == first.facts and world.ca.orders == 1

    world.store.master_keys = [new]  # the old key retired
    again = reconcile(world)
    assert (again.reason, again.revision) == ("Reused", 2)


def test_a_certificate_due_for_renewal_is_resealed_too(world: FakeWorld) -> None:
    old, new = MasterKey(os.urandom(32)), MasterKey(os.urandom(32))
    world.store.master_keys = [old]
    manual = dict(MANUAL_SPEC)
    # 3 days left of 63: within the 7-day margin, so due, and still serving.
    pair = certificate(not_before=NOW - 60 * DAY, not_after=NOW + 3 * DAY)
    secret = parse_spec(manual).manual_secret_name
    assert secret is not None
    world.secrets.items[(NAMESPACE, secret)] = pair
    world.store.publish(LOCATION, *pair, "0a", NOW - 60 * DAY, NOW + 3 * DAY, None)
    world.store.master_keys = [new, old]

    outcome = reconcile(world, manual)
    assert (outcome.ready, outcome.reason) == (True, "Resealed")
    stored = world.store.read_current(LOCATION)
    assert stored is not None and stored.pointer.key_id == new.key_id_hex
    after = reconcile(world, manual)
    assert (after.ready, after.reason) == (True, "ManualRenewalRequired")


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("tag changed", "PointerForged"),
        ("another location's", "PointerMisplaced"),
        ("a stranger's key", "UnknownMasterKey"),
        ("format 1", "PointerUnauthenticated"),
    ],
)
def test_an_untrusted_pointer_is_replaced_from_the_cache_naming_why(
    world: FakeWorld, case: str, reason: str
) -> None:
    reconcile(world)
    data = world.store.pointer_bytes(LOCATION)
    assert data is not None
    document = json.loads(data)
    if case == "tag changed":
        document["revision"] = 5
        data = json.dumps(document).encode()
    elif case == "another location's":
        stored = world.store.read_current(LOCATION)
        assert stored is not None
        other = dataclasses.replace(LOCATION, build_identifier="build-8")
        data = stored.pointer.to_json(other, world.store.master_keys[0])
    elif case == "a stranger's key":
        stranger = MasterKey(os.urandom(32))
        stored = world.store.read_current(LOCATION)
        assert stored is not None
        forged = dataclasses.replace(stored.pointer, key_id=stranger.key_id_hex)
        data = forged.to_json(LOCATION, stranger)
    else:
        for name in ("mac", "key_id", "location"):
            del document[name]
        data = json.dumps({**document, "format_version": 1}).encode()
    world.store.overwrite_pointer(LOCATION, data)

    outcome = reconcile(world)
    assert (outcome.ready, outcome.reason, outcome.revision) == (True, "RestoredFromCache", 2)
    assert reason in [event.reason for event in outcome.events]
    assert world.ca.orders == 1
    assert published(world) == cached(world)


# -- an owner per location (core.ownership) -------------------------------------------------

OTHER_NAMESPACE = "intruder"
OTHER = LocationOwner.resource("cluster-1", OTHER_NAMESPACE, "www", "uid-2")
WIDER_SPEC = {**SPEC, "alternativeNames": ["shop.example.com"]}


def test_of_two_namespaces_claiming_one_location_one_owns_it_and_the_other_is_told(
    world: FakeWorld,
) -> None:
    assert reconcile(world).reason == "Issued"
    for _ in range(10):  # rechecks of both, different names: no flapping
        other = reconcile(world, WIDER_SPEC, owner=OTHER, namespace=OTHER_NAMESPACE)
        assert reconcile(world).reason == "Reused"
    assert (other.ready, other.reason) == (False, "LocationClaimed")
    assert "ManagedCertificate shop/www" in other.message
    assert world.ca.orders == 1 and world.store.publishes == 1
    stored = world.store.read_current(LOCATION)
    assert stored is not None and stored.pointer.owner == OWNER.identity()
    # Nothing of the location's key reached the other namespace.
    assert not [key for key in world.secrets.items if key[0] == OTHER_NAMESPACE]


def test_identical_duplicates_spend_one_order(world: FakeWorld) -> None:
    assert reconcile(world).reason == "Issued"
    assert reconcile(world, owner=OTHER, namespace=OTHER_NAMESPACE).reason == "LocationClaimed"
    assert world.ca.orders == 1


def test_a_non_owner_cannot_replace_the_fleets_certificate_with_a_manual_one(
    world: FakeWorld,
) -> None:
    reconcile(world)
    world.secrets.items[(OTHER_NAMESPACE, "supplied")] = certificate(key=4)
    outcome = reconcile(
        world, MANUAL_SPEC, force_renewal=True, owner=OTHER, namespace=OTHER_NAMESPACE
    )
    assert outcome.reason == "LocationClaimed" and world.store.publishes == 1


def test_a_claimant_that_loses_the_race_is_told_who_won(world: FakeWorld) -> None:
    class Racing(FlakyDatastore):
        def claim(self, *args: Any, **kwargs: Any) -> Any:
            if self.read_claim(LOCATION) is None:  # the other was a moment faster
                super().claim(LOCATION, OTHER, NOW, None)
            return super().claim(*args, **kwargs)

    world.store = Racing()
    outcome = reconcile(world)
    assert (outcome.reason, world.ca.orders) == ("LocationClaimed", 0)
    assert "ManagedCertificate intruder/www" in outcome.message


def test_a_claim_the_provider_cannot_write_conditionally_is_a_configuration_answer(
    world: FakeWorld,
) -> None:
    class NoConditionalWrites(FlakyDatastore):
        def claim(self, *args: Any, **kwargs: Any) -> Any:
            raise DatastoreNotSupportedError("PutObject: NotImplemented (HTTP 501)")

    world.store = NoConditionalWrites()
    outcome = reconcile(world)
    assert (outcome.reason, world.ca.orders) == ("DatastoreNotSupported", 0)


def test_a_deleted_owner_is_taken_over_by_the_resource_that_names_it(world: FakeWorld) -> None:
    reconcile(world)
    world.owners[OWNER] = False  # shop/www was deleted
    refused = reconcile(world, WIDER_SPEC, owner=OTHER, namespace=OTHER_NAMESPACE)
    assert refused.reason == "LocationClaimed"
    assert "certfleet.io/take-over-from=shop/www" in refused.message
    world.ca.next_certificate = certificate(names=(DOMAIN, "shop.example.com"))
    taken = reconcile(
        world, WIDER_SPEC, owner=OTHER, namespace=OTHER_NAMESPACE, take_over_from="shop/www"
    )
    assert (taken.ready, taken.reason) == (True, "Issued")
    assert taken.events[0].reason == "LocationTakenOver"
    stored = world.store.read_current(LOCATION)
    assert stored is not None and stored.pointer.owner == OTHER.identity()
    # The old owner, applied again with its old uid from a backup, is now the one refused.
    world.owners[OTHER] = True
    assert reconcile(world).reason == "LocationClaimed"


def test_a_namespace_the_cloudhost_does_not_admit_touches_nothing(world: FakeWorld) -> None:
    world.refused_namespaces.add(NAMESPACE)
    outcome = reconcile(world)
    assert (outcome.ready, outcome.reason) == (False, "NamespaceNotAllowed")
    assert world.store.read_claim(LOCATION) is None and world.ca.orders == 0
    assert world.secrets.items == {}
