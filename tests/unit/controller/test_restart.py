"""A restart takes a settled resource as its status says: which statuses are settled, what
the metrics say then, and that nothing is read or written for it. The statuses are the ones a
reconciliation wrote (test_reporter's fake API server)."""

from __future__ import annotations

import copy
import dataclasses
from datetime import timedelta
from typing import Any, cast

import kopf
import pytest
from prometheus_client import generate_latest

from certfleet.api.names import TAKE_OVER_ANNOTATION
from certfleet.api.status import CertificateStatus, Condition
from certfleet.controller.handlers import reconcile_resource, resume_from_status
from certfleet.controller.metrics import certificate_series, series_from_status
from certfleet.controller.restart import settled
from unit.controller.test_reconcile import FakeWorld
from unit.controller.test_reporter import ApiServer, Clock, runtime
from unit.core.certificates import DAY, NOW


def written_status() -> tuple[ApiServer, CertificateStatus]:
    """A resource an operator issued a certificate for, and the status it wrote."""
    world, server, clock = FakeWorld(), ApiServer(), Clock()
    operator = runtime(world, server, clock)
    body = server.body()
    assert reconcile_resource(operator, body).reason == "Issued"
    return server, CertificateStatus.from_dict(server.resource["status"])


@pytest.fixture(autouse=True)
def quiet_events(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kopf, "event", lambda *_, **__: None)
    monkeypatch.setattr(kopf, "info", lambda *_, **__: None)


def test_a_finished_job_for_the_spec_as_it_is_is_settled() -> None:
    _, status = written_status()
    assert settled(status, 1, NOW + DAY)
    assert status.renewal_time is not None
    assert not settled(status, 2, NOW + DAY), "the spec changed since (a new generation)"
    assert not settled(status, None, NOW + DAY)
    assert not settled(status, 1, status.renewal_time), "the renewal is due"
    assert not settled(status, 1, status.renewal_time + DAY)
    assert not settled(CertificateStatus(), 1, NOW)


def test_an_order_under_way_a_failure_or_a_reason_to_look_again_is_not_settled() -> None:
    _, status = written_status()
    ready, issuing = status.ready, status.issuing
    assert ready is not None and issuing is not None
    ordering = dataclasses.replace(issuing, status=True, reason="Ordering")
    assert not settled(dataclasses.replace(status, issuing=ordering), 1, NOW + DAY)
    assert not settled(dataclasses.replace(status, failed_issuance_attempts=1), 1, NOW + DAY)
    for reason in ("ManualRenewalRequired", "IssuanceFailed", "DatastoreUnavailable"):
        again = dataclasses.replace(ready, reason=reason)
        assert not settled(dataclasses.replace(status, ready=again), 1, NOW + DAY), reason
    not_ready = dataclasses.replace(ready, status=False)
    assert not settled(dataclasses.replace(status, ready=not_ready), 1, NOW + DAY)
    assert not settled(dataclasses.replace(status, serial=None), 1, NOW + DAY)


def test_the_metrics_from_a_status_are_what_the_reconciliation_exported() -> None:
    world, server, clock = FakeWorld(), ApiServer(), Clock()
    outcome = reconcile_resource(runtime(world, server, clock), server.body())
    status = CertificateStatus.from_dict(server.resource["status"])
    series = series_from_status("www.example.com", status)
    # All but the attempt, which counts that reconciliation's ACME order.
    exported = certificate_series("www.example.com", outcome, status)
    assert series == dataclasses.replace(exported, attempt=None)
    assert series.ready == "True" and series.serial == status.serial
    assert status.not_after is not None and status.renewal_time is not None
    assert series.expiration == int(status.not_after.timestamp())
    assert series.renewal == int(status.renewal_time.timestamp())
    assert (series.failed_issuance_attempts, series.attempt) == (0, None)
    manual = Condition("Ready", True, "ManualRenewalRequired", "")
    assert series_from_status(
        "d", dataclasses.replace(status, ready=manual)
    ).manual_renewal_required


def resumed(server: ApiServer, now_offset: timedelta, **metadata: Any) -> tuple[bool, int, str]:
    """resume_from_status in a new operator process over `server`'s resource: whether it was
    taken as its status says, the API writes it sent, and the metrics it exports."""
    clock = Clock()
    clock.now = NOW + now_offset
    operator = runtime(FakeWorld(), server, clock)
    resource = copy.deepcopy(server.resource)
    resource["metadata"].update(metadata)
    body = kopf.Body(cast(kopf.RawBody, resource))
    patches = len(server.patches)
    taken = resume_from_status(operator, body)
    scrape = generate_latest(operator.metrics.registry).decode()
    return taken, len(server.patches) - patches, scrape


def test_a_settled_resource_is_resumed_without_a_reconciliation() -> None:
    server, status = written_status()
    taken, writes, scrape = resumed(server, DAY)
    assert (taken, writes) == (True, 0)
    assert f'serial="{status.serial}"' in scrape
    assert 'certfleet_certificate_ready_status{condition="True"' in scrape


def test_anything_else_is_left_to_a_reconciliation() -> None:
    server, status = written_status()
    assert status.renewal_time is not None
    assert resumed(server, status.renewal_time - NOW)[0] is False  # due
    assert resumed(server, DAY, generation=2)[0] is False  # the spec changed
    taking_over = {"annotations": {TAKE_OVER_ANNOTATION: "other"}}
    assert resumed(server, DAY, **taking_over)[0] is False
