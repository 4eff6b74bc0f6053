"""One agent, several certificates: one poll per location per sync, one config test and one
reload per batch of changes, a probe per name, and the whole batch rolled back on a failure.
In memory: InMemoryDatastore, a webserver that loads every installed pair on reload."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from prometheus_client import CollectorRegistry

from certfleet.agent.certificate import CertificateSync
from certfleet.agent.decision import SyncReason
from certfleet.agent.installer import CertificateInstaller
from certfleet.agent.loop import Agent, AgentSettings
from certfleet.agent.metrics import AgentMetrics
from certfleet.agent.probe import ProbeError, ServedCertificate
from certfleet.agent.reporter import NodeReport
from certfleet.agent.webserver import CommandResult
from certfleet.core.facts import certificate_facts
from certfleet.datastore import DatastoreLocation, PointerPoll
from certfleet.datastore.memory import InMemoryDatastore

from .pki import NOW, Pair, leaf, roots

DOMAINS = ("www.example.com", "auth.example.com", "proxy.example.com")


@dataclass
class Webserver:
    """Loads every domain's installed fullchain at reload, as one webserver with SNI would."""

    links: dict[str, Path]
    test_ok: bool = True
    reload_ok: bool = True
    calls: list[str] = field(default_factory=list)
    loaded: dict[str, bytes] = field(default_factory=dict)

    def test(self) -> CommandResult:
        self.calls.append("test")
        return CommandResult(self.test_ok, "test" if self.test_ok else "test: broken")

    def reload(self) -> CommandResult:
        self.calls.append("reload")
        if not self.reload_ok:
            return CommandResult(False, "reload: failed")
        self.loaded = {
            domain: (link / "fullchain.pem").read_bytes()
            for domain, link in self.links.items()
            if (link / "fullchain.pem").exists()
        }
        return CommandResult(True, "reloaded")


@dataclass
class Prober:
    """A handshake with one name as SNI."""

    webserver: Webserver
    domain: str

    def served(self) -> ServedCertificate:
        loaded = self.webserver.loaded.get(self.domain)
        if loaded is None:
            raise ProbeError("no certificate for this name")
        facts = certificate_facts(x509.load_pem_x509_certificate(loaded))
        return ServedCertificate(facts.serial, facts.sha256, facts.not_after)

    def verify(self) -> None:
        """What is served here is always what a client trusts."""

    def wait_for(self, sha256: str, timeout: float) -> ServedCertificate:
        served = self.served()
        if served.sha256 != sha256:
            raise ProbeError(f"still serves serial {served.serial}")
        return served


@dataclass
class Reports:
    reports: list[NodeReport] = field(default_factory=list)

    def report(self, report: NodeReport) -> None:
        self.reports.append(report)


class CountingStore(InMemoryDatastore):
    def __init__(self) -> None:
        super().__init__(clock=lambda: NOW)
        self.polls: list[str] = []

    def poll_pointer(self, location: DatastoreLocation, etag: str | None) -> PointerPoll:
        self.polls.append(location.domain)
        return super().poll_pointer(location, etag)


@dataclass
class Node:
    agent: Agent
    store: CountingStore
    webserver: Webserver
    reports: dict[str, Reports]
    registry: CollectorRegistry
    locations: dict[str, DatastoreLocation]

    def publish(self, domain: str) -> Pair:
        pair = leaf(domain)
        facts = certificate_facts(pair.certificate)
        location = self.locations[domain]
        current = self.store.poll_pointer(location, None)
        self.store.polls.pop()
        self.store.publish(
            location,
            pair.fullchain,
            pair.key,
            facts.serial,
            facts.not_before,
            facts.not_after,
            current.etag,
        )
        return pair

    def served(self, domain: str) -> str | None:
        loaded = self.webserver.loaded.get(domain)
        if loaded is None:
            return None
        return certificate_facts(x509.load_pem_x509_certificate(loaded)).serial

    def reloads(self, result: str) -> float:
        value = self.registry.get_sample_value("certfleet_agent_reloads_total", {"result": result})
        return value or 0.0


def make_node(tmp_path: Path, domains: Sequence[str] = DOMAINS) -> Node:
    store = CountingStore()
    root = tmp_path / "live"
    installers = {domain: CertificateInstaller(root, domain) for domain in domains}
    webserver = Webserver({domain: installers[domain].link for domain in domains})
    registry = CollectorRegistry()
    metrics = AgentMetrics(registry)
    settings = AgentSettings(node="vm-1", poll_interval=10)
    locations = {
        domain: DatastoreLocation("bucket", "certfleet", "sandbox", "build-1", domain)
        for domain in domains
    }
    reports = {domain: Reports() for domain in domains}
    certificates = [
        CertificateSync(
            locations[domain],
            settings.for_certificates(),
            store,
            installers[domain],
            Prober(webserver, domain),
            reports[domain],
            metrics.for_domain(domain),
            trust_roots=roots(),
            clock=lambda: NOW,
        )
        for domain in domains
    ]
    agent = Agent(settings, certificates, webserver, metrics)
    return Node(agent, store, webserver, reports, registry, locations)


def test_three_new_certificates_cost_one_test_and_one_reload(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    pairs = {domain: node.publish(domain) for domain in DOMAINS}
    result = node.agent.sync_once()
    assert result.ok and result.reason is SyncReason.Installed, result
    assert node.webserver.calls == ["test", "reload"]
    assert node.reloads("success") == 1
    assert sorted(node.store.polls) == sorted(DOMAINS)
    for domain, pair in pairs.items():
        serial = certificate_facts(pair.certificate).serial
        assert node.served(domain) == serial
        assert node.reports[domain].reports[-1].served_serial == serial
        assert node.agent.results[domain].reason is SyncReason.Installed
        info = {"domain": domain, "serial": serial}
        assert node.registry.get_sample_value("certfleet_agent_served_serial_info", info) == 1


def test_an_unchanged_sync_polls_each_location_once_and_reloads_nothing(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    for domain in DOMAINS:
        node.publish(domain)
    node.agent.sync_once()
    node.store.polls.clear()
    node.webserver.calls.clear()
    result = node.agent.sync_once()
    assert result.ok and "the datastore is unchanged" in result.message, result
    assert sorted(node.store.polls) == sorted(DOMAINS)
    assert node.webserver.calls == []


def test_one_changed_certificate_reloads_once_and_leaves_the_others(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    first = {domain: node.publish(domain) for domain in DOMAINS}
    node.agent.sync_once()
    second = node.publish("auth.example.com")
    node.webserver.calls.clear()
    assert node.agent.sync_once().ok
    assert node.webserver.calls == ["test", "reload"]
    assert node.served("auth.example.com") == certificate_facts(second.certificate).serial
    www = certificate_facts(first["www.example.com"].certificate).serial
    assert node.served("www.example.com") == www
    assert node.agent.results["www.example.com"].message == "the datastore is unchanged"


@pytest.mark.parametrize(
    ("broken", "reason", "calls"),
    [
        ("test", SyncReason.ConfigTestFailed, ["test"]),
        ("reload", SyncReason.ReloadFailed, ["test", "reload", "reload"]),
    ],
)
def test_a_failed_test_or_reload_rolls_the_whole_batch_back(
    tmp_path: Path, broken: str, reason: SyncReason, calls: list[str]
) -> None:
    node = make_node(tmp_path)
    first = {domain: node.publish(domain) for domain in DOMAINS}
    assert node.agent.sync_once().ok
    installed = {
        domain: (node.webserver.links[domain] / "fullchain.pem").read_bytes() for domain in DOMAINS
    }
    for domain in DOMAINS:
        node.publish(domain)
    setattr(node.webserver, f"{broken}_ok", False)
    node.webserver.calls.clear()
    result = node.agent.sync_once()
    assert not result.ok and result.reason is reason, result
    assert node.webserver.calls == calls
    for domain in DOMAINS:
        assert (node.webserver.links[domain] / "fullchain.pem").read_bytes() == installed[domain]
        assert node.agent.results[domain].reason is reason
        assert "with 2 other certificates" in node.agent.results[domain].message
        assert node.served(domain) == certificate_facts(first[domain].certificate).serial
        assert node.reports[domain].reports[-1].last_error is not None


def test_a_refused_certificate_does_not_hold_back_the_others(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    node.publish("www.example.com")
    node.publish("auth.example.com")
    wrong = leaf("elsewhere.example.org")  # published under proxy.example.com's location
    facts = certificate_facts(wrong.certificate)
    node.store.publish(
        node.locations["proxy.example.com"],
        wrong.fullchain,
        wrong.key,
        facts.serial,
        facts.not_before,
        facts.not_after,
        None,
    )
    result = node.agent.sync_once()
    assert not result.ok
    assert node.webserver.calls == ["test", "reload"]
    assert node.agent.results["www.example.com"].reason is SyncReason.Installed
    assert node.agent.results["auth.example.com"].reason is SyncReason.Installed
    assert node.agent.results["proxy.example.com"].reason == "NameMismatch"
    assert node.served("proxy.example.com") is None


def test_a_domain_listed_twice_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="listed twice"):
        node = make_node(tmp_path, ("www.example.com",))
        Agent(
            node.agent.settings,
            [*node.agent.certificates, *node.agent.certificates],
            node.webserver,
            AgentMetrics(CollectorRegistry()),
        )
