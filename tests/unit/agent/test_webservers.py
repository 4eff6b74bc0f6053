"""One agent, several webservers on the node (an nginx for the site, an Apache for the auth
server): each webserver whose certificates changed is tested and reloaded once per batch, and
a failure rolls back only its own certificates. In memory, as test_batch.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from prometheus_client import CollectorRegistry

from certfleet.agent.certificate import CertificateSync
from certfleet.agent.decision import SyncReason
from certfleet.agent.installer import CertificateInstaller
from certfleet.agent.loop import Agent, AgentSettings
from certfleet.agent.metrics import AgentMetrics
from certfleet.core.facts import certificate_facts
from certfleet.datastore import DatastoreLocation

from .pki import NOW, leaf, roots
from .test_batch import CountingStore, Prober, Reports, Webserver

SITE, AUTH, PROXY = "www.example.com", "auth.example.com", "proxy.example.com"
SERVED_BY = {SITE: "nginx", AUTH: "apache2", PROXY: "nginx"}


class TwoWebservers:
    def __init__(self, tmp_path: Path) -> None:
        self.store = CountingStore()
        root = tmp_path / "live"
        installers = {domain: CertificateInstaller(root, domain) for domain in SERVED_BY}
        self.webservers = {
            name: Webserver(
                {d: installers[d].link for d, served in SERVED_BY.items() if served == name}
            )
            for name in ("nginx", "apache2")
        }
        self.registry = CollectorRegistry()
        metrics = AgentMetrics(self.registry)
        settings = AgentSettings(node="vm-1", poll_interval=10)
        self.locations = {
            domain: DatastoreLocation("bucket", "certfleet", "vm", "b1", domain)
            for domain in SERVED_BY
        }
        certificates = [
            CertificateSync(
                self.locations[domain],
                settings.for_certificates(),
                self.store,
                installers[domain],
                Prober(self.webservers[SERVED_BY[domain]], domain),
                Reports(),
                metrics.for_domain(domain),
                trust_roots=roots(),
                clock=lambda: NOW,
            )
            for domain in SERVED_BY
        ]
        by_domain = {domain: self.webservers[name] for domain, name in SERVED_BY.items()}
        self.agent = Agent(settings, certificates, None, metrics, webservers=by_domain)

    def publish(self, domain: str) -> str:
        pair = leaf(domain)
        facts = certificate_facts(pair.certificate)
        location = self.locations[domain]
        current = self.store.poll_pointer(location, None)
        self.store.publish(
            location,
            pair.fullchain,
            pair.key,
            facts.serial,
            facts.not_before,
            facts.not_after,
            current.etag,
        )
        return facts.serial

    def served(self, domain: str) -> str | None:
        loaded = self.webservers[SERVED_BY[domain]].loaded.get(domain)
        if loaded is None:
            return None
        return certificate_facts(x509.load_pem_x509_certificate(loaded)).serial

    def calls(self) -> dict[str, list[str]]:
        return {name: webserver.calls for name, webserver in self.webservers.items()}

    def clear(self) -> None:
        for webserver in self.webservers.values():
            webserver.calls.clear()


def test_each_webserver_is_tested_and_reloaded_once_per_batch(tmp_path: Path) -> None:
    node = TwoWebservers(tmp_path)
    serials = {domain: node.publish(domain) for domain in SERVED_BY}
    result = node.agent.sync_once()
    assert result.ok and result.reason is SyncReason.Installed, result
    assert node.calls() == {"nginx": ["test", "reload"], "apache2": ["test", "reload"]}
    assert {domain: node.served(domain) for domain in SERVED_BY} == serials
    assert node.registry.get_sample_value("certfleet_agent_reloads_total", {"result": "success"})

    node.clear()
    node.publish(AUTH)
    assert node.agent.sync_once().ok
    assert node.calls() == {"nginx": [], "apache2": ["test", "reload"]}, "only the auth server's"


def test_a_failed_config_test_rolls_back_only_that_webservers_certificates(
    tmp_path: Path,
) -> None:
    node = TwoWebservers(tmp_path)
    first = {domain: node.publish(domain) for domain in SERVED_BY}
    assert node.agent.sync_once().ok
    second = {domain: node.publish(domain) for domain in SERVED_BY}
    node.webservers["apache2"].test_ok = False
    node.clear()
    result = node.agent.sync_once()
    assert not result.ok and result.reason is SyncReason.ConfigTestFailed, result
    assert node.calls() == {"nginx": ["test", "reload"], "apache2": ["test"]}
    assert node.served(AUTH) == first[AUTH]
    assert node.agent.results[AUTH].reason is SyncReason.ConfigTestFailed
    assert "other certificate" not in node.agent.results[AUTH].message  # alone at apache
    for domain in (SITE, PROXY):
        assert node.served(domain) == second[domain]
        assert node.agent.results[domain].reason is SyncReason.Installed


def test_every_certificate_needs_its_webserver_unless_reloading_is_off(tmp_path: Path) -> None:
    node = TwoWebservers(tmp_path)
    partial = {SITE: node.webservers["nginx"]}
    with pytest.raises(ValueError, match=r"auth\.example\.com"):
        Agent(
            node.agent.settings,
            node.agent.certificates,
            None,
            AgentMetrics(CollectorRegistry()),
            webservers=partial,
        )
    with pytest.raises(ValueError, match="one webserver for all"):
        Agent(
            node.agent.settings,
            node.agent.certificates,
            node.webservers["nginx"],
            AgentMetrics(CollectorRegistry()),
            webservers=partial,
        )
