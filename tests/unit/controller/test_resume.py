"""An ACME order is never lost: the reconciler over the in-memory datastore, a dict of Secrets
(the real SecretCache over it) and a fake CA that keeps its orders and can be "killed" at a
chosen step. A kill is a BaseException: nothing after it runs, as after a SIGKILL; the next
reconcile over the same Secrets and datastore is the restarted operator."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from certfleet.api.spec import CertificateSpec, cache_secret_name
from certfleet.api.spec import parse_certificate_spec as parse_spec
from certfleet.api.status import CertificateStatus
from certfleet.controller.pending_orders import (
    ORDER_KEY,
    PRIVATE_KEY_KEY,
    order_document,
    read_pending_order,
)
from certfleet.controller.ports import PemPair, PendingOrder
from certfleet.controller.report import events_to_post, status_from_outcome
from unit.controller.resources import NAMESPACE, SPEC
from unit.controller.test_reconcile import (
    FakeIssuer,
    FakeWorld,
    cached,
    certificate,
    published,
    reconcile,
)
from unit.core.certificates import DAY, NOW

DIRECTORY, ACCOUNT = "https://ca.test/dir", "https://ca.test/acct/1"
SECRET = (NAMESPACE, cache_secret_name(parse_spec(SPEC)))


class Killed(BaseException):
    """The process died here."""


@dataclass
class OrderingCA(FakeIssuer):
    """Orders that live at the CA: pending until finalised, then valid with their
    certificate. `kill_after` ("placed" or "issued") kills the process once, there."""

    kill_after: str | None = None
    status: dict[str, str] = field(default_factory=dict)
    certificates: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)
    issued: int = 0
    resumed: list[str] = field(default_factory=list)

    def issue(
        self,
        spec: CertificateSpec,
        namespace: str,
        replacing: bytes | None,
        resume: PendingOrder | None = None,
        placed: Callable[[PendingOrder], None] | None = None,
    ) -> PemPair:
        if resume is not None and self.status.get(resume.order_url) in ("pending", "valid"):
            # The saved key is the one the order's certificate is (to be) for.
            assert resume.key == self.certificates[resume.order_url][1]
            self.resumed.append(resume.order_url)
            return self._finalise(resume.order_url)
        self.orders += 1
        url = f"https://ca.test/order/{self.orders}"
        self.certificates[url] = self.next_certificate
        self.status[url] = "pending"
        if placed is not None:
            placed(PendingOrder(DIRECTORY, ACCOUNT, url, spec.names, self.next_certificate[1]))
        self._maybe_killed("placed")
        return self._finalise(url)

    def _finalise(self, url: str) -> PemPair:
        if self.status[url] != "valid":
            self.status[url] = "valid"
            self.issued += 1
        self._maybe_killed("issued")
        return PemPair(*self.certificates[url])

    def _maybe_killed(self, step: str) -> None:
        if self.kill_after == step:
            self.kill_after = None
            raise Killed(step)


@pytest.fixture
def world() -> FakeWorld:
    return FakeWorld(ca=OrderingCA())


def ca(world: FakeWorld) -> OrderingCA:
    assert isinstance(world.ca, OrderingCA)
    return world.ca


def pending(world: FakeWorld) -> PendingOrder | None:
    extra = world.secrets.extra.get(SECRET, {})
    return read_pending_order(extra.get(ORDER_KEY), extra.get(PRIVATE_KEY_KEY))


@pytest.mark.parametrize("step", ["placed", "issued"])
def test_a_kill_mid_order_resumes_the_order_instead_of_placing_another(
    world: FakeWorld, step: str
) -> None:
    ca(world).kill_after = step
    with pytest.raises(Killed):
        reconcile(world)
    saved = pending(world)
    assert saved is not None and saved.order_url == "https://ca.test/order/1"
    assert saved.key == world.ca.next_certificate[1]
    assert world.secrets.read(*SECRET) == (b"", b"")  # no certificate kept yet

    outcome = reconcile(world)  # the restarted operator
    assert (outcome.ready, outcome.reason) == (True, "Issued")
    assert ca(world).resumed == ["https://ca.test/order/1"]
    assert (world.ca.orders, ca(world).issued) == (1, 1)
    assert published(world) == world.ca.next_certificate == world.secrets.read(*SECRET)
    assert pending(world) is None  # the certificate kept: the order is done


def test_a_renewal_killed_mid_order_is_resumed_and_the_old_certificate_serves_meanwhile(
    world: FakeWorld,
) -> None:
    first = reconcile(world)
    renewal = certificate(not_before=NOW + 84 * DAY, not_after=NOW + 170 * DAY, key=5)
    world.ca.next_certificate = renewal
    ca(world).kill_after = "placed"
    with pytest.raises(Killed):
        reconcile(world, now=NOW + 85 * DAY)
    assert world.secrets.read(*SECRET) != (b"", b"")  # the old certificate stays cached
    outcome = reconcile(world, now=NOW + 85 * DAY)
    assert outcome.ready and outcome.revision == (first.revision or 0) + 1
    assert published(world) == renewal
    assert (world.ca.orders, ca(world).issued) == (2, 2)


def test_renew_now_killed_after_the_download_publishes_that_certificate(world: FakeWorld) -> None:
    reconcile(world)
    renewed = certificate(not_before=NOW - DAY / 2, key=6)
    world.ca.next_certificate = renewed
    ca(world).kill_after = "issued"
    with pytest.raises(Killed):
        reconcile(world, force_renewal=True)
    outcome = reconcile(world, force_renewal=True)  # the annotation is still there
    assert outcome.ready and published(world) == renewed
    assert (world.ca.orders, ca(world).issued) == (2, 2), "the renewal was ordered twice"


@pytest.mark.parametrize("step", ["placed", "issued"])
def test_a_plain_reconciliation_after_a_killed_renew_now_keeps_its_order_and_certificate(
    world: FakeWorld, step: str
) -> None:
    """kopf resumes a resource with its plain handler first, then the renew-now's."""
    reconcile(world)
    renewed = certificate(not_before=NOW - DAY / 2, key=6)
    world.ca.next_certificate = renewed
    ca(world).kill_after = step
    with pytest.raises(Killed):
        reconcile(world, force_renewal=True)
    plain = reconcile(world)
    assert plain.reason == "Reused"
    outcome = reconcile(world, force_renewal=True)
    assert outcome.ready and published(world) == renewed
    assert (world.ca.orders, ca(world).issued) == (2, 2), "the renewal was ordered twice"


def test_a_renewal_in_its_predecessors_second_killed_before_its_publish_is_never_lost(
    world: FakeWorld,
) -> None:
    """The same notBefore as the published certificate: the cache's marker, not the dates,
    says which one is the renewal (controller/unpublished.py)."""
    reconcile(world)
    renewed = certificate(key=6)  # certificate()'s notBefore, as the published one's
    world.ca.next_certificate = renewed
    world.store.publish_error = Killed("between the cache write and the publish")
    with pytest.raises(Killed):
        reconcile(world, force_renewal=True)
    world.store.publish_error = None
    plain = reconcile(world)  # kopf's plain handler first
    assert plain.reason == "Reused" and cached(world) == renewed, "the renewal overwritten"
    outcome = reconcile(world, force_renewal=True)
    assert (outcome.ready, outcome.reason) == (True, "RestoredFromCache")
    assert published(world) == renewed
    assert (world.ca.orders, ca(world).issued) == (2, 2), "the renewal was ordered twice"
    assert reconcile(world).reason == "Reused" and cached(world) == renewed


def test_an_order_that_turned_invalid_is_replaced_by_a_new_one(world: FakeWorld) -> None:
    ca(world).kill_after = "placed"
    with pytest.raises(Killed):
        reconcile(world)
    ca(world).status["https://ca.test/order/1"] = "invalid"  # its challenge failed meanwhile
    outcome = reconcile(world)
    assert outcome.ready and world.ca.orders == 2 and ca(world).resumed == []
    assert pending(world) is None


def test_an_order_whose_key_cannot_be_saved_is_never_finalised(world: FakeWorld) -> None:
    world.secrets.fail_writes = True
    outcome = reconcile(world, previous_failures=2)
    assert outcome.issuance_failed and not outcome.ready
    assert outcome.retry_after == 20  # the back-off: 5 s base, the third failure in a row
    assert ca(world).issued == 0, "a certificate was issued whose key was not kept"
    assert "the API server did not answer" in outcome.message


def test_a_failed_cache_write_after_the_download_still_publishes(world: FakeWorld) -> None:
    """The pending order stays saved: had the publish failed too, the next attempt would
    download the same certificate again."""
    world.secrets.fail_certificate_writes = True
    outcome = reconcile(world)
    assert outcome.ready and published(world) == world.ca.next_certificate
    # After the claim of the location, the first thing said is the failed cache write.
    assert [e.reason for e in outcome.events][:2] == ["LocationOwned", "CacheWriteFailed"]
    assert pending(world) is not None
    world.secrets.fail_certificate_writes = False
    reconcile(world)  # reuses, and caches it: the order is forgotten
    assert pending(world) is None and world.ca.orders == 1


def test_the_pending_key_is_never_in_a_status_an_event_or_a_message(world: FakeWorld) -> None:
    ca(world).kill_after = "placed"
    with pytest.raises(Killed):
        reconcile(world)
    outcomes = [reconcile(world)]
    world.secrets.fail_writes = True
    ca(world).kill_after = None
    outcomes.append(reconcile(world, force_renewal=True))
    key = world.ca.next_certificate[1]
    body = b"".join(key.splitlines()[1:-1]).decode()
    for outcome in outcomes:
        told = json.dumps(status_from_outcome(outcome, CertificateStatus(), 1, NOW), default=str)
        told += repr(outcome) + repr(events_to_post(outcome, CertificateStatus()))
        assert "PRIVATE KEY" not in told and body[:40] not in told


def test_the_pending_order_document_holds_no_key_and_bad_ones_are_no_order() -> None:
    order = PendingOrder(DIRECTORY, ACCOUNT, "https://ca.test/order/1", ("a.test",), b"x")
    key = b"-----BEGIN PRIVATE KEY-----\nMIG\n-----END PRIVATE KEY-----\n"
    document = order_document(order)
    assert b"PRIVATE" not in document and b'"x"' not in document
    assert read_pending_order(document, key) == PendingOrder(
        DIRECTORY, ACCOUNT, "https://ca.test/order/1", ("a.test",), key
    )
    good = json.loads(document)
    bad_documents = [
        b"",
        b"{",
        b"[]",
        json.dumps({**good, "orderUrl": "file:///etc/passwd"}).encode(),
        json.dumps({**good, "names": []}).encode(),
        json.dumps({**good, "names": "a.test"}).encode(),
        json.dumps({**good, "accountUrl": 7}).encode(),
        json.dumps({**good, "orderUrl": "https://" + "a" * 5000}).encode(),
        b" " * (17 * 1024),
    ]
    for bad in bad_documents:
        assert read_pending_order(bad, key) is None, bad[:60]
    for bad_key in (b"", b"not a key", base64.b64encode(key), key * 400):
        assert read_pending_order(document, bad_key) is None
