"""The agent's sync loop against moto's S3, with a fake webserver, prober and reporter.

The fake webserver behaves like nginx where it matters: a reload reads the installed files
and the prober then sees what was read, so "served" is only ever what a reload picked up.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from cryptography import x509
from prometheus_client import CollectorRegistry, generate_latest

from certfleet.agent.certificate import MAX_RELOADS_FOR_UNSERVED, CertificateSync
from certfleet.agent.decision import NodeReason, SyncReason
from certfleet.agent.installer import CertificateInstaller
from certfleet.agent.loop import Agent, AgentSettings
from certfleet.agent.metrics import AgentMetrics
from certfleet.agent.probe import ProbeError, ServedCertificate
from certfleet.agent.reporter import NodeReport, ReportError
from certfleet.agent.webserver import CommandResult
from certfleet.core.checks import Reason
from certfleet.core.facts import certificate_facts
from certfleet.datastore import (
    DatastoreLocation,
    DatastoreUnavailableError,
    MasterKey,
    PointerPoll,
    S3Datastore,
)
from certfleet.datastore.encryption import envelope_encrypt
from certfleet.datastore.pointer import Pointer
from certfleet.datastore.protocol import StoredCertificate

from .pki import DAY, DOMAIN, NOW, Pair, leaf, roots

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

BUCKET = "certfleet-agent-test"
INTERVAL = 10.0
RECHECK = 300.0


class FakeWebserver:
    """nginx in miniature: `reload` loads what `<root>/<domain>/` holds at that moment."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.test_ok = True
        self.reload_ok = True
        self.calls: list[str] = []
        self.loaded: bytes | None = None  # the fullchain the running workers use

    def test(self) -> CommandResult:
        self.calls.append("test")
        return CommandResult(self.test_ok, "nginx -t" if self.test_ok else "nginx -t: broken")

    def reload(self) -> CommandResult:
        self.calls.append("reload")
        if not self.reload_ok:
            return CommandResult(False, "nginx -s reload: failed")
        self.loaded = (self.link / "fullchain.pem").read_bytes()
        return CommandResult(True, "reloaded")


class FakeProber:
    def __init__(self, webserver: FakeWebserver) -> None:
        self.webserver = webserver
        self.ignore_reloads = False  # a listener that never picks up new files
        self.untrusted = False  # what it serves fails verification (chain, name)
        self._stale: bytes | None = None

    def served(self) -> ServedCertificate:
        loaded = self._stale if self.ignore_reloads else self.webserver.loaded
        if loaded is None:
            raise ProbeError("connection refused")
        facts = certificate_facts(x509.load_pem_x509_certificate(loaded))
        return ServedCertificate(facts.serial, facts.sha256, facts.not_after)

    def verify(self) -> None:
        if self.untrusted:
            raise ProbeError("certificate verify failed: unable to get local issuer certificate")

    def wait_for(self, sha256: str, timeout: float) -> ServedCertificate:
        served = self.served()
        if served.sha256 != sha256:
            raise ProbeError(f"still serves serial {served.serial}")
        self.verify()
        return served

    def freeze(self) -> None:
        self._stale, self.ignore_reloads = self.webserver.loaded, True


@dataclass
class RecordingReporter:
    reports: list[NodeReport] = field(default_factory=list)
    failing: bool = False

    def report(self, report: NodeReport) -> None:
        if self.failing:
            raise ReportError("the API server is away")
        self.reports.append(report)


@dataclass
class Clock:
    now: datetime = NOW
    ticks: float = 1000.0

    def advance(self, seconds: float) -> None:
        self.ticks += seconds

    def monotonic(self) -> float:
        return self.ticks


@dataclass
class Calls:
    """S3 operations the agent's client made: (operation, key, If-None-Match)."""

    seen: list[tuple[str, str, str | None]] = field(default_factory=list)

    def hook(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.seen.append((model.name, params.get("Key", ""), params.get("IfNoneMatch")))

    def take(self) -> list[tuple[str, str, str | None]]:
        seen, self.seen = self.seen, []
        return seen


@dataclass
class Node:
    agent: Agent
    installer: CertificateInstaller
    webserver: FakeWebserver
    prober: FakeProber
    reporter: RecordingReporter
    registry: CollectorRegistry
    calls: Calls
    clock: Clock

    def sync(self) -> NodeReason:
        result = self.agent.sync_once()
        return result.reason

    def metric(self, name: str, **labels: str) -> float | None:
        return sample(self.registry, name, **labels)

    @property
    def installed_serial(self) -> str | None:
        files = self.installer.read_installed()
        if files is None:
            return None
        return certificate_facts(x509.load_pem_x509_certificate(files.fullchain)).serial


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    """The sum of the samples `name` whose labels include `labels` (None: there is none), so
    a test names only the labels it is about (the domain is implied with one certificate)."""
    found = [
        each.value
        for family in registry.collect()
        for each in family.samples
        if each.name == name and labels.items() <= each.labels.items()
    ]
    return sum(found) if found else None


@dataclass
class World:
    client: S3Client
    store: S3Datastore
    master_key: MasterKey
    location: DatastoreLocation
    tmp_path: Path
    etag: str | None = None

    def publish(self, pair: Pair, *, privkey: bytes | None = None) -> Pointer:
        facts = certificate_facts(pair.certificate)
        pointer = self.store.publish(
            self.location,
            pair.fullchain,
            privkey or pair.key,
            serial=facts.serial,
            not_before=facts.not_before,
            not_after=facts.not_after,
            expected_pointer_etag=self.etag,
        )
        self.etag = self._pointer_etag()
        return pointer

    def publish_tampered(self, pair: Pair) -> None:
        """A revision whose fullchain had a byte flipped after it was written (bit rot,
        tampering): the pointer's digests are those of the intact files."""
        current = self.store.read_current(self.location)
        revision = current.pointer.revision + 1 if current else 1
        flipped = bytearray(pair.fullchain)
        flipped[100] ^= 0x01
        privkey_key = self.location.privkey_key(revision)
        blob = envelope_encrypt(pair.key, self.master_key, privkey_key.encode())
        self.client.put_object(
            Bucket=BUCKET, Key=self.location.fullchain_key(revision), Body=bytes(flipped)
        )
        self.client.put_object(Bucket=BUCKET, Key=privkey_key, Body=blob)
        facts = certificate_facts(pair.certificate)
        pointer = Pointer(
            revision=revision,
            serial=facts.serial,
            not_before=facts.not_before,
            not_after=facts.not_after,
            fullchain_sha256=hashlib.sha256(pair.fullchain).hexdigest(),
            privkey_sha256=hashlib.sha256(pair.key).hexdigest(),
            privkey_enc_sha256=hashlib.sha256(blob).hexdigest(),
            published_at=NOW.replace(microsecond=0),
            key_id=self.master_key.key_id_hex,
        )
        body = pointer.to_json(self.location, self.master_key)
        self.client.put_object(Bucket=BUCKET, Key=self.location.pointer_key, Body=body)
        self.etag = self._pointer_etag()

    def put_pointer(self, pointer: Pointer) -> None:
        """Write `pointer` back as current.json (a rollback by whoever can write the bucket)."""
        self.client.put_object(
            Bucket=BUCKET,
            Key=self.location.pointer_key,
            Body=pointer.to_json(self.location, self.master_key),
        )
        self.etag = self._pointer_etag()

    def _pointer_etag(self) -> str:
        return self.client.head_object(Bucket=BUCKET, Key=self.location.pointer_key)["ETag"]

    def node(
        self,
        name: str = "node-a",
        *,
        datastore: Any = None,
        reload: bool = True,
        force: bool = False,
        root: Path | None = None,
    ) -> Node:
        clock = Clock()
        calls = Calls()
        client = boto3.client("s3", region_name="us-east-1")
        client.meta.events.register("before-parameter-build.s3", calls.hook)
        installer = CertificateInstaller(root or self.tmp_path / name / "live", DOMAIN)
        webserver = FakeWebserver(installer.link)
        prober = FakeProber(webserver)
        reporter = RecordingReporter()
        registry = CollectorRegistry()
        settings = AgentSettings(
            node=name,
            poll_interval=INTERVAL,
            max_backoff=8 * INTERVAL,
            reload=reload,
            force=force,
            report_interval=300,
            recheck_interval=RECHECK,
        )
        metrics = AgentMetrics(registry)
        certificate = CertificateSync(
            self.location,
            settings.for_certificates(),
            datastore or S3Datastore(client, [self.master_key]),
            installer,
            prober if reload else None,
            reporter,
            metrics.for_domain(DOMAIN),
            trust_roots=roots(),
            clock=lambda: clock.now,
            monotonic=clock.monotonic,
        )
        agent = Agent(
            settings,
            [certificate],
            webserver if reload else None,
            metrics,
            monotonic=clock.monotonic,
        )
        return Node(agent, installer, webserver, prober, reporter, registry, calls, clock)


@pytest.fixture
def world(moto_s3: S3Client, tmp_path: Path) -> World:
    moto_s3.create_bucket(Bucket=BUCKET)
    master_key = MasterKey(os.urandom(32))
    location = DatastoreLocation(BUCKET, "certfleet", "sandbox", "build-1", DOMAIN)
    return World(moto_s3, S3Datastore(moto_s3, [master_key]), master_key, location, tmp_path)


def revision_reads(calls: list[tuple[str, str, str | None]]) -> list[str]:
    return [key for operation, key, _ in calls if "/revisions/" in key]


def test_first_sync_installs_reloads_confirms_and_reports(world: World) -> None:
    pair = leaf()
    world.publish(pair)
    node = world.node()

    assert node.sync() is SyncReason.Installed
    assert node.installed_serial == pair.serial
    assert node.webserver.calls == ["test", "reload"]
    assert node.agent.served is not None and node.agent.served.serial == pair.serial
    report = node.reporter.reports[-1]
    assert (report.reason, report.served_serial, report.last_error) == (
        "Installed",
        pair.serial,
        None,
    )
    assert report.last_successful_sync == NOW
    status = report.to_status()
    assert status["lastSuccessfulSync"] == "2030-06-01T12:00:00Z"
    assert node.metric("certfleet_agent_reloads_total", result="success") == 1
    assert node.metric("certfleet_agent_served_serial_info", domain=DOMAIN, serial=pair.serial) == 1
    assert node.metric("certfleet_agent_certificate_expiration_timestamp_seconds") == (
        pair.certificate.not_valid_after_utc.timestamp()
    )
    assert node.metric("certfleet_agent_last_successful_sync_timestamp_seconds") == NOW.timestamp()
    exposition = generate_latest(node.registry)
    assert b"PRIVATE KEY" not in exposition


def test_an_unchanged_datastore_costs_one_conditional_get_and_no_download(world: World) -> None:
    world.publish(leaf())
    node = world.node()
    node.sync()
    node.calls.take()
    reports = len(node.reporter.reports)

    for _ in range(5):
        node.clock.advance(INTERVAL)
        assert node.sync() is SyncReason.Installed
    calls = node.calls.take()
    assert [operation for operation, _, _ in calls] == ["GetObject"] * 5
    assert all(key == world.location.pointer_key and etag for _, key, etag in calls)
    assert node.webserver.calls == ["test", "reload"], "an idle sync touched the webserver"
    assert len(node.reporter.reports) == reports, "an idle sync re-sent an unchanged report"
    assert node.metric("certfleet_agent_polls_total", result="unchanged") == 5


def test_a_heartbeat_report_refreshes_last_successful_sync(world: World) -> None:
    world.publish(leaf())
    node = world.node()
    node.sync()
    node.clock.advance(301)
    node.clock.now = NOW + DAY
    node.sync()
    assert node.reporter.reports[-1].last_successful_sync == NOW + DAY


def test_the_node_is_rechecked_locally_and_repaired(world: World) -> None:
    pair = leaf()
    world.publish(pair)
    node = world.node()
    node.sync()
    node.calls.take()
    # The webserver was restarted with other files, and someone edited the installed chain.
    node.webserver.loaded = leaf("placeholder").fullchain
    node.clock.advance(RECHECK - 1)
    node.sync()
    assert node.webserver.calls == ["test", "reload"], "checked before the recheck interval"

    node.clock.advance(1)
    assert node.sync() is SyncReason.Installed
    assert node.agent.served is not None and node.agent.served.serial == pair.serial
    assert revision_reads(node.calls.take()) == [], "intact files were downloaded again"

    current = node.installer.store / (node.installer.current_version() or "")
    (current / "fullchain.pem").write_bytes(leaf().fullchain)
    node.clock.advance(RECHECK)
    assert node.sync() is SyncReason.Installed
    assert node.installed_serial == pair.serial
    assert len(revision_reads(node.calls.take())) == 2, "the edited files were not restored"


def test_a_new_revision_is_installed_at_the_next_sync(world: World) -> None:
    first, second = leaf(not_before=NOW - 2 * DAY), leaf(not_before=NOW - DAY)
    world.publish(first)
    node = world.node()
    node.sync()
    world.publish(second)
    node.calls.take()

    assert node.sync() is SyncReason.Installed
    assert node.installed_serial == second.serial
    assert node.agent.served is not None and node.agent.served.serial == second.serial
    assert len(revision_reads(node.calls.take())) == 2  # fullchain and the encrypted key
    assert node.metric("certfleet_agent_reloads_total", result="success") == 2


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("flipped bytes", SyncReason.DatastoreIntegrity),
        ("key of another certificate", Reason.KeyMismatch),
        ("expired", Reason.Expired),
        ("a pointer rolled back below the installed revision", SyncReason.RolledBack),
    ],
)
def test_a_bad_revision_is_refused_and_the_previous_certificate_stays(
    world: World, case: str, reason: NodeReason
) -> None:
    earlier = world.publish(leaf(not_before=NOW - 3 * DAY))
    good = leaf(not_before=NOW - 2 * DAY)
    world.publish(good)
    node = world.node()
    node.sync()
    if case == "flipped bytes":
        world.publish_tampered(leaf())
    elif case == "key of another certificate":
        world.publish(leaf(), privkey=leaf().key)
    elif case == "expired":
        world.publish(leaf(not_before=NOW - 100 * DAY, not_after=NOW - DAY))
    else:
        world.put_pointer(earlier)

    assert node.sync() is reason
    assert node.installed_serial == good.serial
    assert node.agent.served is not None and node.agent.served.serial == good.serial
    assert node.webserver.calls == ["test", "reload"], "a refused revision reached the webserver"
    report = node.reporter.reports[-1]
    assert report.reason == reason and report.served_serial == good.serial
    assert report.last_error and "PRIVATE KEY" not in report.last_error
    assert report.last_successful_sync == NOW, "the last success is still the earlier one"
    assert node.metric("certfleet_agent_sync_errors_total", reason=str(reason)) == 1
    assert len(node.installer.versions()) == 1


def test_a_refused_revision_is_not_downloaded_again_until_its_retry_time(world: World) -> None:
    world.publish(leaf(not_before=NOW - 2 * DAY))
    node = world.node()
    node.sync()
    world.publish(leaf(), privkey=leaf().key)
    assert node.sync() is Reason.KeyMismatch
    node.calls.take()

    node.clock.advance(INTERVAL / 2)  # the first retry is one interval later
    node.sync()
    assert revision_reads(node.calls.take()) == []
    errors = node.metric("certfleet_agent_sync_errors_total", reason="KeyMismatch")
    assert errors == 1, "a sync that only waited was counted as an error"

    node.clock.advance(INTERVAL)
    assert node.sync() is Reason.KeyMismatch
    assert len(revision_reads(node.calls.take())) == 2
    # The second failure doubles the wait.
    node.clock.advance(1.5 * INTERVAL)
    node.sync()
    assert revision_reads(node.calls.take()) == []
    node.clock.advance(INTERVAL)
    node.sync()
    assert len(revision_reads(node.calls.take())) == 2


def test_a_rolled_back_pointer_is_installed_with_force(world: World) -> None:
    older = leaf(not_before=NOW - 10 * DAY)
    earlier = world.publish(older)
    world.publish(leaf(not_before=NOW - DAY))
    node = world.node(force=True)
    node.sync()
    world.put_pointer(earlier)
    assert node.sync() is SyncReason.Installed
    assert node.installed_serial == older.serial


def test_a_replacement_issued_earlier_is_installed_when_it_is_the_newer_revision(
    world: World,
) -> None:
    # A person's MANUAL replacement, issued before the certificate it replaces.
    world.publish(leaf(not_before=NOW - DAY))
    node = world.node()
    node.sync()
    replacement = leaf(not_before=NOW - 20 * DAY)
    world.publish(replacement)
    assert node.sync() is SyncReason.Installed
    assert node.installed_serial == replacement.serial
    files = node.installer.read_installed()
    assert files is not None and files.origin is not None
    assert (files.origin.location, files.origin.revision) == (world.location.s3_uri, 2)


def test_a_failed_config_test_restores_the_previous_files(world: World) -> None:
    good, new = leaf(not_before=NOW - 2 * DAY), leaf()
    world.publish(good)
    node = world.node()
    node.sync()
    world.publish(new)
    node.webserver.test_ok = False

    assert node.sync() is SyncReason.ConfigTestFailed
    assert node.installed_serial == good.serial
    assert node.webserver.calls == ["test", "reload", "test"], "reloaded with a failed test"
    assert node.agent.served is not None and node.agent.served.serial == good.serial
    report = node.reporter.reports[-1]
    assert report.reason == "ConfigTestFailed" and report.last_error
    assert "previous files were restored" in report.last_error
    assert "nginx -t: broken" in report.last_error
    assert node.metric("certfleet_agent_reloads_total", result="test_failed") == 1

    # Fixed: the retry installs it.
    node.webserver.test_ok = True
    node.clock.advance(INTERVAL)
    assert node.sync() is SyncReason.Installed
    assert node.agent.served is not None and node.agent.served.serial == new.serial
    assert node.reporter.reports[-1].last_error is None


def test_a_failed_reload_restores_the_previous_files_and_reloads_again(world: World) -> None:
    good, new = leaf(not_before=NOW - 2 * DAY), leaf()
    world.publish(good)
    node = world.node()
    node.sync()
    world.publish(new)
    node.webserver.reload_ok = False

    assert node.sync() is SyncReason.ReloadFailed
    assert node.installed_serial == good.serial
    assert node.webserver.calls[2:] == ["test", "reload", "reload"]
    assert node.metric("certfleet_agent_reloads_total", result="reload_failed") == 1
    error = node.agent.last_result[1]
    assert error is not None and "the reload after that failed too" in error


def test_a_probe_that_never_sees_the_new_leaf_keeps_the_files_and_retries(world: World) -> None:
    good, new = leaf(not_before=NOW - 2 * DAY), leaf()
    world.publish(good)
    node = world.node()
    node.sync()
    world.publish(new)
    node.prober.freeze()

    assert node.sync() is SyncReason.ProbeFailed
    assert node.installed_serial == new.serial, "files that passed test and reload are kept"
    assert node.agent.served is not None and node.agent.served.serial == good.serial
    report = node.reporter.reports[-1]
    assert (report.served_serial, report.installed_serial) == (good.serial, new.serial)

    # The listener catches up later (a slow graceful reload): the retry sees it served.
    node.prober.ignore_reloads = False
    node.clock.advance(INTERVAL)
    node.calls.take()
    assert node.sync() is SyncReason.UpToDate
    assert revision_reads(node.calls.take()) == [], "the installed files were downloaded again"
    assert node.agent.served is not None and node.agent.served.serial == new.serial


def test_a_restarted_agent_downloads_nothing_and_reloads_only_if_needed(world: World) -> None:
    pair = leaf()
    world.publish(pair)
    first = world.node()
    first.sync()

    again = world.node(root=first.installer.root)
    again.webserver.loaded = first.webserver.loaded  # the same running webserver
    assert again.sync() is SyncReason.UpToDate
    assert revision_reads(again.calls.take()) == []
    assert again.webserver.calls == []

    # A webserver that never picked the files up (the agent died before reloading).
    stale = world.node(root=first.installer.root)
    stale.webserver.loaded = leaf("placeholder").fullchain
    assert stale.sync() is SyncReason.Installed
    assert stale.webserver.calls == ["test", "reload"]
    assert stale.agent.served is not None and stale.agent.served.serial == pair.serial


def test_the_init_step_installs_without_reloading(world: World) -> None:
    pair = leaf()
    world.publish(pair)
    node = world.node(reload=False)
    assert node.sync() is SyncReason.Installed
    assert node.installed_serial == pair.serial
    assert node.webserver.calls == []
    assert node.reporter.reports[-1].served_serial is None


def test_nothing_published_is_reported_and_installs_nothing(world: World) -> None:
    node = world.node()
    assert node.sync() is SyncReason.NotPublished
    assert node.installer.read_installed() is None
    assert node.metric("certfleet_agent_polls_total", result="missing") == 1
    error = node.reporter.reports[-1].last_error
    assert error is not None and world.location.pointer_key in error


@dataclass
class FlakyDatastore:
    """The real store, with an outage switch."""

    inner: S3Datastore
    down: bool = False

    def poll_pointer(self, location: DatastoreLocation, etag: str | None) -> PointerPoll:
        self._check()
        return self.inner.poll_pointer(location, etag)

    def read_revision(
        self, location: DatastoreLocation, pointer: Pointer, pointer_etag: str
    ) -> StoredCertificate:
        self._check()
        return self.inner.read_revision(location, pointer, pointer_etag)

    def _check(self) -> None:
        if self.down:
            raise DatastoreUnavailableError("GetObject: could not connect to the endpoint")


def test_an_unreachable_datastore_keeps_the_certificate_and_recovers_at_once(
    world: World,
) -> None:
    pair = leaf()
    world.publish(pair)
    flaky = FlakyDatastore(world.store)
    node = world.node(datastore=flaky)
    node.sync()
    flaky.down = True
    for _ in range(30):  # long enough for any backoff to reach its maximum
        node.clock.advance(INTERVAL)
        assert node.sync() is SyncReason.DatastoreUnavailable
    assert node.installed_serial == pair.serial
    assert node.metric("certfleet_agent_sync_errors_total", reason="DatastoreUnavailable") == 30
    assert node.reporter.reports[-1].reason == "DatastoreUnavailable"

    flaky.down = False
    node.clock.advance(INTERVAL)
    node.clock.now = NOW + DAY
    # The outage outlasted the recheck interval: the node is checked again, and is fine.
    assert node.sync() is SyncReason.UpToDate, "the first poll after the outage must succeed"
    report = node.reporter.reports[-1]
    assert (report.last_error, report.last_successful_sync) == (None, NOW + DAY)


def test_a_failed_report_is_sent_at_the_next_sync(world: World) -> None:
    world.publish(leaf())
    node = world.node()
    node.reporter.failing = True
    node.sync()
    assert node.reporter.reports == []
    node.reporter.failing = False
    node.clock.advance(INTERVAL)
    node.sync()
    assert [report.reason for report in node.reporter.reports] == ["Installed"]


def test_run_syncs_until_stopped(world: World) -> None:
    world.publish(leaf())
    node = world.node()
    synced: list[NodeReason] = []
    original: Callable[[], Any] = node.agent.sync_once

    def counting() -> Any:
        result = original()
        synced.append(result.reason)
        if len(synced) == 3:
            node.agent.stop()
        node.agent.request_sync()  # no waiting for the interval
        return result

    node.agent.sync_once = counting  # type: ignore[method-assign]
    node.agent.run()
    assert synced == [SyncReason.Installed] * 3


def test_a_failed_verified_probe_is_never_reported_as_served(world: World) -> None:
    """The installed leaf is served, but a client would not trust it (a wrong chain, a
    name): the node reports ProbeFailed at every sync, never UpToDate."""
    good = leaf()
    world.publish(good)
    node = world.node()
    node.prober.untrusted = True
    assert node.sync() is SyncReason.ProbeFailed
    node.clock.advance(INTERVAL)
    assert node.sync() is SyncReason.ProbeFailed, "the next sync called it served"
    node.prober.untrusted = False
    node.clock.advance(4 * INTERVAL)  # past the back-off of two failed syncs
    assert node.sync() is SyncReason.UpToDate


def _reloads(node: Node) -> int:
    return node.webserver.calls.count("reload")


def test_reloads_for_a_leaf_the_webserver_never_serves_stop_and_resume_on_a_change(
    world: World,
) -> None:
    """The webserver serves another certificate for the name (its configuration names other
    files): a few reloads, then NotServed without reloading, until something changes."""
    good, new = leaf(not_before=NOW - 2 * DAY), leaf(not_before=NOW - DAY)
    world.publish(good)
    node = world.node()
    node.sync()
    world.publish(new)
    node.prober.freeze()  # keeps serving `good`, whatever is installed
    assert node.sync() is SyncReason.ProbeFailed  # the install's own reload
    after_install = _reloads(node)

    seen: list[NodeReason] = []
    for _ in range(12):  # an hour of syncs, past every back-off
        node.clock.advance(RECHECK)
        seen.append(node.sync())
    assert _reloads(node) - after_install == MAX_RELOADS_FOR_UNSERVED, seen
    assert seen[-1] is SyncReason.NotServed
    report = node.reporter.reports[-1]
    assert report.reason == "NotServed"
    assert report.last_error is not None
    assert f"after {MAX_RELOADS_FOR_UNSERVED} reloads" in report.last_error
    assert good.serial in report.last_error and new.serial in report.last_error
    assert node.metric("certfleet_agent_sync_errors_total", reason="NotServed") is not None

    # Something changes: a new revision is installed and reloaded again.
    newest = leaf()
    world.publish(newest)
    node.clock.advance(RECHECK)
    node.prober.ignore_reloads = False
    assert node.sync() is SyncReason.Installed
    assert node.agent.served is not None and node.agent.served.serial == newest.serial


def test_a_different_served_leaf_counts_as_a_change(world: World) -> None:
    good, new, other = leaf(not_before=NOW - 2 * DAY), leaf(not_before=NOW - DAY), leaf()
    world.publish(good)
    node = world.node()
    node.sync()
    world.publish(new)
    node.prober.freeze()
    node.sync()
    for _ in range(12):
        node.clock.advance(RECHECK)
        node.sync()
    assert node.agent.last_result[0] is SyncReason.NotServed
    before = _reloads(node)
    # A person reloads the webserver with yet another certificate: worth trying again.
    node.prober._stale = other.fullchain
    node.clock.advance(RECHECK)
    node.sync()
    assert _reloads(node) == before + 1


# -- pointer trust: authenticated, of this location, never rolled back ------------------------


def _other_location(world: World) -> DatastoreLocation:
    return DatastoreLocation(BUCKET, "certfleet", "sandbox", "build-2", DOMAIN)


def _tamper(world: World, case: str, older_pointer: bytes) -> None:
    """Replace what the datastore holds as `case` says (the node has installed revision 2)."""
    location, key = world.location, world.master_key
    current = world.store.read_current(location)
    assert current is not None
    pointer = current.pointer
    if case == "rolled back":
        body = older_pointer
    elif case == "format 1":
        document = json.loads(pointer.to_json(location, key))
        for name in ("mac", "key_id", "location"):
            del document[name]
        body = json.dumps({**document, "format_version": 1}).encode()
    elif case == "tag stripped":
        document = json.loads(pointer.to_json(location, key))
        del document["mac"]
        body = json.dumps(document).encode()
    elif case == "bad tag":
        document = json.loads(pointer.to_json(location, key))
        document["revision"] = pointer.revision + 1
        body = json.dumps(document).encode()
    elif case == "another location's pointer":
        other = _other_location(world)
        theirs = world.store.publish(
            other, *_pair_args(leaf(not_before=NOW - DAY / 2)), expected_pointer_etag=None
        )
        for name in ("fullchain.pem", "privkey.pem.enc"):
            source = f"{other.revision_prefix(theirs.revision)}{name}"
            world.client.copy_object(
                Bucket=BUCKET,
                Key=f"{location.revision_prefix(theirs.revision + 5)}{name}",
                CopySource={"Bucket": BUCKET, "Key": source},
            )
        body = body_of(world.client, other.pointer_key)
    elif case == "another location's revision":
        other = _other_location(world)
        theirs = world.store.publish(
            other, *_pair_args(leaf(not_before=NOW - DAY / 2)), expected_pointer_etag=None
        )
        for name in ("fullchain.pem", "privkey.pem.enc"):
            world.client.copy_object(
                Bucket=BUCKET,
                Key=f"{location.revision_prefix(pointer.revision)}{name}",
                CopySource={
                    "Bucket": BUCKET,
                    "Key": f"{other.revision_prefix(theirs.revision)}{name}",
                },
            )
        return
    elif case == "unknown key id":
        stranger = MasterKey(os.urandom(32))
        forged = dataclasses.replace(pointer, revision=9, key_id=stranger.key_id_hex)
        body = forged.to_json(location, stranger)
    else:
        assert case == "revision under an unknown key"
        stranger = MasterKey(os.urandom(32))
        pair = leaf(not_before=NOW - DAY / 2)
        foreign = S3Datastore(world.client, [stranger, key])
        facts = certificate_facts(pair.certificate)
        foreign.publish(
            location,
            pair.fullchain,
            pair.key,
            facts.serial,
            facts.not_before,
            facts.not_after,
            current.pointer_etag,
        )
        # The pointer re-sealed with the fleet's own key: only the revision is a stranger's.
        again = S3Datastore(world.client, [key, stranger]).read_current(location)
        assert again is not None
        body = dataclasses.replace(again.pointer, key_id=key.key_id_hex).to_json(location, key)
    world.client.put_object(Bucket=BUCKET, Key=location.pointer_key, Body=body)


def _pair_args(pair: Pair) -> tuple[bytes, bytes, str, datetime, datetime]:
    facts = certificate_facts(pair.certificate)
    return pair.fullchain, pair.key, facts.serial, facts.not_before, facts.not_after


def body_of(client: S3Client, key: str) -> bytes:
    return client.get_object(Bucket=BUCKET, Key=key)["Body"].read()


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("rolled back", SyncReason.RolledBack),
        ("format 1", SyncReason.PointerUnauthenticated),
        ("tag stripped", SyncReason.PointerUnauthenticated),
        ("bad tag", SyncReason.PointerForged),
        ("another location's pointer", SyncReason.PointerMisplaced),
        ("unknown key id", SyncReason.UnknownMasterKey),
        ("revision under an unknown key", SyncReason.UnknownMasterKey),
    ],
)
def test_a_pointer_that_is_not_trusted_installs_nothing(
    world: World, case: str, reason: SyncReason
) -> None:
    first, second = leaf(not_before=NOW - 3 * DAY), leaf(not_before=NOW - 2 * DAY)
    world.publish(first)
    older_pointer = body_of(world.client, world.location.pointer_key)
    node = world.node()
    node.sync()
    world.publish(second)
    node.clock.advance(INTERVAL)
    assert node.sync() is SyncReason.Installed
    versions = node.installer.versions()
    _tamper(world, case, older_pointer)
    node.clock.advance(RECHECK + 1)

    assert node.sync() is reason
    assert node.installed_serial == second.serial
    assert node.installer.versions() == versions, "something was installed"
    assert node.webserver.calls == ["test", "reload"] * 2, "the webserver was touched"
    assert node.reporter.reports[-1].reason == reason


def test_another_locations_revision_copied_in_is_refused_by_a_new_node(world: World) -> None:
    world.publish(leaf(not_before=NOW - 3 * DAY))
    world.publish(leaf(not_before=NOW - 2 * DAY))
    _tamper(world, "another location's revision", b"")
    node = world.node("node-new")  # a scaling event: nothing installed yet

    assert node.sync() is SyncReason.DatastoreIntegrity
    assert node.installed_serial is None and node.installer.versions() == []
    assert node.webserver.calls == []


def test_a_restarted_node_still_refuses_a_rolled_back_pointer(world: World) -> None:
    world.publish(leaf(not_before=NOW - 3 * DAY))
    older_pointer = body_of(world.client, world.location.pointer_key)
    world.publish(leaf(not_before=NOW - 2 * DAY))
    root = world.tmp_path / "node" / "live"
    assert world.node(root=root).sync() is SyncReason.Installed
    world.client.put_object(Bucket=BUCKET, Key=world.location.pointer_key, Body=older_pointer)

    restarted = world.node(root=root)  # a new process, e.g. the next cron run
    assert restarted.sync() is SyncReason.RolledBack
    record = json.loads((restarted.installer.store / "revisions.json").read_bytes())
    assert record == {
        "format_version": 1,
        "highest": {"sandbox/build-1/www.example.com": 2},
    }
    assert (restarted.installer.store / "revisions.json").stat().st_mode & 0o777 == 0o600


def test_a_fresh_node_takes_the_first_authentic_pointer_and_higher_ones(world: World) -> None:
    world.publish(leaf(not_before=NOW - 3 * DAY))
    node = world.node()
    assert node.sync() is SyncReason.Installed
    world.publish(leaf(not_before=NOW - 2 * DAY))
    node.clock.advance(INTERVAL)
    assert node.sync() is SyncReason.Installed


def test_a_revision_record_that_is_not_ours_stops_installs_until_removed(world: World) -> None:
    world.publish(leaf())
    node = world.node()
    node.installer.store.mkdir(parents=True)
    (node.installer.store / "revisions.json").write_text('{"highest": "lots"}')
    assert node.sync() is SyncReason.InstallFailed
    assert "remove it" in (node.reporter.reports[-1].last_error or "")
    assert node.installed_serial is None
