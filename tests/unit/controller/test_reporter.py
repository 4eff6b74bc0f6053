"""The status writes of reconciliations, counted at a fake API server: a reconciliation that
finds what the last one found writes nothing and posts no event; a real change is written at
once; a body older than the operator's own last write is not taken for the status now."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any, cast

import kopf
import pytest

from certfleet.api.fleet import agents_summary_patch
from certfleet.api.status import changes_nothing, merge_patch
from certfleet.controller.handlers import Runtime, reconcile_resource
from certfleet.controller.reconcile import Reconciler
from certfleet.kube.gateway import KubernetesGateway, KubernetesUnavailableError
from unit.controller.resources import NAMESPACE, SPEC
from unit.controller.test_reconcile import FakeWorld
from unit.core.certificates import DAY, NOW


def rfc7386(target: Any, patch: Any) -> Any:
    """The API server's merge patch, written out apart from the code under test."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = rfc7386(result.get(key), value)
    return result


class ApiServer:
    """One ManagedCertificate, and every status PATCH sent to it."""

    def __init__(self) -> None:
        self.resource: dict[str, Any] = {
            "metadata": {"namespace": NAMESPACE, "name": "www", "uid": "uid-1", "generation": 1},
            "spec": dict(SPEC),
            "status": {},
        }
        self.patches: list[Mapping[str, Any]] = []

    def patch_certificate_status(
        self, namespace: str, name: str, status: Mapping[str, Any]
    ) -> None:
        self.patches.append(copy.deepcopy(dict(status)))
        self.resource["status"] = rfc7386(self.resource["status"], copy.deepcopy(dict(status)))

    def read_certificate(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return copy.deepcopy(self.resource)

    def body(self) -> kopf.Body:
        """The resource as a watch event or the renewal timer's GET hands it over."""
        return kopf.Body(cast(kopf.RawBody, copy.deepcopy(self.resource)))


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    posted: list[str] = []

    def post(_body: Any, *, reason: str, message: str = "", **_: Any) -> None:
        posted.append(reason)

    monkeypatch.setattr(kopf, "event", post)
    monkeypatch.setattr(kopf, "info", post)
    yield posted


def runtime(world: FakeWorld, server: ApiServer, clock: Clock) -> Runtime:
    return Runtime(
        Reconciler(world.ports(), clock), cast(KubernetesGateway, server), clock, cluster="c-1"
    )


def test_a_recheck_that_finds_what_the_last_one_found_writes_nothing(events: list[str]) -> None:
    world, server, clock = FakeWorld(), ApiServer(), Clock()
    operator = runtime(world, server, clock)
    first = reconcile_resource(operator, server.body())
    assert (first.ready, first.reason) == (True, "Issued")
    assert len(server.patches) == 2  # "issuing", then the outcome
    assert "Issued" in events

    # The next look reuses what it published: that is said once ...
    clock.now = NOW + timedelta(hours=1)
    assert reconcile_resource(operator, server.body()).reason == "Reused"
    assert len(server.patches) == 3
    ready = server.resource["status"]["conditions"][0]
    assert ready["lastTransitionTime"] == "2030-06-01T12:00:00Z", "still Ready since then"

    # ... and every recheck after it, an hour apart (and after a restart: a new process
    # with no memory of its writes), finds the same: no PATCH, no event.
    posted = len(events)
    for hours, process in ((2, operator), (3, operator), (4, runtime(world, server, clock))):
        clock.now = NOW + timedelta(hours=hours)
        assert reconcile_resource(process, server.body()).reason == "Reused"
    assert len(server.patches) == 3
    assert len(events) == posted

    # A real change is written at the next look: the CA's renewal window moved.
    world.ari_window = (NOW + 10 * DAY, NOW + 12 * DAY)
    reconcile_resource(operator, server.body())
    assert len(server.patches) == 4
    assert server.resource["status"]["renewalTime"] == "2030-06-12T12:00:00Z"
    assert server.patches[-1]["conditions"][0]["lastTransitionTime"] == "2030-06-01T12:00:00Z"


def test_a_body_older_than_the_operators_last_write_is_not_taken_for_the_status(
    events: list[str],
) -> None:
    world, server, clock = FakeWorld(), ApiServer(), Clock()
    operator = runtime(world, server, clock)
    reconcile_resource(operator, server.body())
    reconcile_resource(operator, server.body())  # Reused
    before = server.body()  # what a queued watch event still carries
    patches = len(server.patches)

    # The renewal timer's look writes a change (the CA's window) ...
    world.ari_window = (NOW + 10 * DAY, NOW + 12 * DAY)
    reconcile_resource(operator, server.body())
    assert len(server.patches) == patches + 1

    # ... then a handler runs on the older body while the window is back to none: its
    # outcome equals that body's status but not the resource's, so it is written.
    world.ari_window = None
    reconcile_resource(operator, before)
    assert len(server.patches) == patches + 2
    assert server.resource["status"]["renewalTime"] == before.status["renewalTime"]


def test_a_failed_status_write_is_tried_again_at_the_next_reconciliation(
    events: list[str],
) -> None:
    world, server, clock = FakeWorld(), ApiServer(), Clock()
    operator = runtime(world, server, clock)
    reconcile_resource(operator, server.body())
    body = server.body()
    written = server.patch_certificate_status

    def unreachable(namespace: str, name: str, status: Mapping[str, Any]) -> None:
        raise KubernetesUnavailableError("the API server is away")

    server.patch_certificate_status = unreachable  # type: ignore[method-assign]
    with pytest.raises(kopf.TemporaryError):
        reconcile_resource(operator, body)
    server.patch_certificate_status = written  # type: ignore[method-assign]
    patches = len(server.patches)
    reconcile_resource(operator, body)
    assert len(server.patches) == patches + 1


def test_a_new_resource_gets_its_fleet_summary_in_its_own_status_patches(
    events: list[str],
) -> None:
    world, server, clock = FakeWorld(), ApiServer(), Clock()
    # The first event of a new resource: summarise_fleet has nothing to write (before, it
    # patched "no node has reported yet" ahead of the reconciliation, every new resource).
    assert agents_summary_patch(server.resource["status"]) is None
    reconcile_resource(runtime(world, server, clock), server.body())
    assert len(server.patches) == 2  # "issuing" and the outcome: no write of the summary's own
    assert server.patches[0]["fleet"]["summary"] == "no node has reported yet"
    assert agents_summary_patch(server.resource["status"]) is None, "up to date"

    operator = runtime(world, server, clock)
    clock.now = NOW + timedelta(hours=1)
    reconcile_resource(operator, server.body())  # Reused: said once

    # Agents report; summarise_fleet writes the summary (as it does, from its event) ...
    serial = server.resource["status"]["serialNumber"]
    server.resource["status"]["fleet"]["nodes"] = {"n1": {"servedSerial": serial}}
    summary = agents_summary_patch(server.resource["status"])
    assert summary is not None
    server.patch_certificate_status(NAMESPACE, "www", summary)
    patches = len(server.patches)
    # ... and the operator's next look, finding the same, writes nothing (the summary it
    # last wrote itself is out of date, but the status says what it would write now).
    clock.now = NOW + timedelta(hours=2)
    reconcile_resource(operator, server.body())
    assert len(server.patches) == patches
    assert server.resource["status"]["fleet"]["summary"] == f"1/1 nodes serve serial {serial}"
    assert server.resource["status"]["fleet"]["nodes"] == {"n1": {"servedSerial": serial}}


@pytest.mark.parametrize(
    ("target", "patch", "expected"),
    [  # RFC 7386, appendix A
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patch_is_rfc_7386(
    target: dict[str, Any], patch: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert merge_patch(target, patch) == expected == rfc7386(target, patch)
    assert changes_nothing(target, patch) == (expected == target)


def test_what_changes_nothing() -> None:
    status = {"serialNumber": "0a", "issuedBy": {"server": "s", "position": 0}, "fleet": {"n": 1}}
    assert changes_nothing(status, {"serialNumber": "0a", "issuedBy": {"position": 0}})
    assert changes_nothing(status, {"cacheSecretName": None})  # removing what is not there
    assert not changes_nothing(status, {"issuedBy": None})
    assert not changes_nothing(status, {"serialNumber": "0b"})
    assert not changes_nothing(status, {"fleet": {"n": 2}})
