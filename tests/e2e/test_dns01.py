"""DNS-01 end to end on the real servers: BIND 9 authoritative for the test zones with RFC 2136
+ TSIG, pebble resolving through it (`-dnsserver`), the operator finding zones and checking
propagation through it (`--dns01-resolver`), and the TXT records gone afterwards."""

from __future__ import annotations

import base64
import json
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from e2e.fleet import Fleet
from testbed.certfleet_install import OPERATOR_NAMESPACE
from testbed.dns import BindServer, PowerDnsServer, TsigKey
from testbed.processes import free_port
from testbed.waiting import wait_for

pytestmark = pytest.mark.testbed

ZONE = "dns01.test"
DELEGATED = "delegated.test"
SLOW = "slow.test"  # a second nameserver, a secondary on ::1, that may be down
STALE = "stale.test"  # a second nameserver that never gets the updates


def _zone(zone: str, *records: str, second: bool = False) -> list[str]:
    lines = [f"@ NS ns1.{zone}.", "ns1 A 127.0.0.1", "@ A 127.0.0.1", "* A 127.0.0.1"]
    if second:
        lines += [f"@ NS ns2.{zone}.", "ns2 AAAA ::1"]
    return [*lines, *records]


class DnsBed:
    def __init__(self, workdir: Path) -> None:
        self.port = _port_free_on_both()
        self.tsig = TsigKey()
        self.primary = BindServer(
            workdir / "ns1",
            {
                ZONE: _zone(ZONE, f"_acme-challenge.cname-host CNAME cname-host.{DELEGATED}."),
                DELEGATED: _zone(DELEGATED),
                SLOW: _zone(SLOW, second=True),
                STALE: _zone(STALE, second=True),
            },
            self.tsig,
            port=self.port,
            notify=("::1", self.port),
        )
        self.workdir = workdir
        self.secondary: BindServer | None = None
        self.stale_copy: BindServer | None = None

    def start_stale_copy(self) -> BindServer:
        """ns2 of stale.test: its own static copy, never updated."""
        self.stale_copy = BindServer(
            self.workdir / "ns2-stale",
            {STALE: _zone(STALE, second=True)},
            self.tsig,
            address="::1",
            port=self.port,
            updates=False,
        )
        self.stale_copy.start()
        return self.stale_copy

    def start_secondary(self) -> BindServer:
        """ns2 of slow.test: a secondary of ns1, told of every change."""
        self.secondary = BindServer(
            self.workdir / "ns2-slow",
            {SLOW: []},
            self.tsig,
            address="::1",
            port=self.port,
            secondary_of=("127.0.0.1", self.port),
        )
        self.secondary.start()
        return self.secondary

    def stop(self) -> None:
        for server in (self.secondary, self.stale_copy, self.primary):
            if server is not None:
                server.stop()


def _port_free_on_both() -> int:
    """One port for both nameservers: the operator asks every one on the same port."""
    for _ in range(20):
        port = free_port("127.0.0.1")
        try:
            for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
                for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                    with socket.socket(family, kind) as sock:
                        sock.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no port free on both 127.0.0.1 and ::1")


@pytest.fixture
def dns_bed(tmp_path: Path) -> Iterator[DnsBed]:
    bed = DnsBed(tmp_path / "dns")
    with bed.primary:
        try:
            yield bed
        finally:
            bed.stop()


def _fleet(
    start_fleet: Callable[..., Fleet], bed: DnsBed, propagation_timeout: float = 20
) -> Fleet:
    fleet = start_fleet(
        acme={"dns_server": ("127.0.0.1", bed.port)},
        operator_args=(
            f"--dns01-resolver=127.0.0.1:{bed.port}",
            f"--dns01-nameserver-port={bed.port}",
            f"--dns01-propagation-timeout={propagation_timeout}",
            "--dns01-poll-seconds=0.5",
            "--issuance-backoff-seconds=30",
        ),
    )
    fleet.install.apply_secret(
        fleet.namespace,
        "dns-rfc2136",
        {
            "server": f"127.0.0.1:{bed.port}".encode(),
            "tsigKeyName": bed.tsig.name.encode(),
            "tsigSecret": bed.tsig.secret.encode(),
            "tsigAlgorithm": bed.tsig.algorithm.encode(),
        },
    )
    return fleet


def _apply_dns01(fleet: Fleet, name: str, domain: str, *alternatives: str) -> None:
    acme = {
        "server": fleet.ca.directory_url,
        "challengeType": "DNS-01",
        "dns01": {"provider": "rfc2136", "secretRef": {"name": "dns-rfc2136"}},
    }
    spec: dict[str, Any] = {"acme": acme}
    if alternatives:
        spec["alternativeNames"] = list(alternatives)
    fleet.apply_certificate("automatic.yaml", name, domain, **spec)


def _ledgers(fleet: Fleet) -> list[Any]:
    found = json.loads(
        fleet.install.control_plane.kubectl(
            "get",
            "secret",
            "-n",
            OPERATOR_NAMESPACE,
            "-l",
            "certfleet.io/dns01-records",
            "-o",
            "json",
        ).stdout
    )
    return [
        record
        for item in found["items"]
        for record in json.loads(base64.b64decode(item["data"]["records.json"]))
    ]


def _names(fleet: Fleet, domain: str) -> list[str]:
    stored = fleet.stored(domain)
    assert stored is not None, "nothing was published"
    leaf = x509.load_pem_x509_certificates(stored.fullchain)[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return sorted(san.get_values_for_type(x509.DNSName))


def test_plain_and_wildcard_certificates_through_bind_leave_no_record(
    start_fleet: Callable[..., Fleet], dns_bed: DnsBed
) -> None:
    fleet = _fleet(start_fleet, dns_bed)
    label = f"d{secrets.token_hex(3)}"
    plain, apex = f"www-{label}.{ZONE}", f"{label}.{ZONE}"

    started = time.monotonic()
    _apply_dns01(fleet, "plain", plain)
    status = fleet.install.wait_for_condition(fleet.namespace, "plain", "True", "Issued", 60)
    dns01_seconds = time.monotonic() - started
    assert _names(fleet, plain) == [plain]

    _apply_dns01(fleet, "wild", apex, f"*.{apex}")
    fleet.install.wait_for_condition(fleet.namespace, "wild", "True", "Issued", 60)
    assert _names(fleet, apex) == sorted([apex, f"*.{apex}"])

    # The same run, HTTP-01: the webserver answers for every name of the zone.
    http_domain = f"http-{label}.{ZONE}"
    started = time.monotonic()
    fleet.apply_certificate("automatic.yaml", "http", http_domain)
    fleet.install.wait_for_condition(fleet.namespace, "http", "True", "Issued", 60)
    http01_seconds = time.monotonic() - started

    for name in (plain, apex):
        assert dns_bed.primary.txt_values(f"_acme-challenge.{name}") == set(), name
    assert _ledgers(fleet) == []
    log = fleet.install.operator.log_path.read_text() if fleet.install.operator else ""
    assert dns_bed.tsig.secret not in log, "the TSIG secret was logged"
    assert status["status"]["conditions"][0]["reason"] == "Issued"
    print(f"DNS-01 Ready in {dns01_seconds:.2f} s, HTTP-01 Ready in {http01_seconds:.2f} s")


def test_a_cname_delegated_challenge_is_answered_in_the_target_zone(
    start_fleet: Callable[..., Fleet], dns_bed: DnsBed
) -> None:
    fleet = _fleet(start_fleet, dns_bed)
    domain = f"cname-host.{ZONE}"
    _apply_dns01(fleet, "cname", domain)
    fleet.install.wait_for_condition(fleet.namespace, "cname", "True", "Issued", 60)
    assert _names(fleet, domain) == [domain]
    operator_log = fleet.install.operator.log_path.read_text() if fleet.install.operator else ""
    assert f"published a TXT value at _acme-challenge.cname-host.{DELEGATED}" not in operator_log
    assert f"published a TXT value at cname-host.{DELEGATED} (zone {DELEGATED})" in operator_log
    assert dns_bed.primary.txt_values(f"cname-host.{DELEGATED}") == set()


def test_a_record_never_visible_everywhere_times_out_clearly_and_is_removed(
    start_fleet: Callable[..., Fleet], dns_bed: DnsBed
) -> None:
    dns_bed.start_stale_copy()
    fleet = _fleet(start_fleet, dns_bed, propagation_timeout=3)
    domain = f"www-{secrets.token_hex(3)}.{STALE}"
    _apply_dns01(fleet, "stale", domain)
    resource = fleet.install.wait_for_condition(
        fleet.namespace, "stale", "False", "DNS01PropagationTimeout", 60
    )
    status = resource["status"]
    ready = status["conditions"][0]
    assert "not visible" in ready["message"] and "::1" in ready["message"], ready
    assert "next attempt in 30 s" in ready["message"], ready  # the back-off applies
    assert status["lastFailureReason"] == "DNS01PropagationTimeout"
    assert status["failedIssuanceAttempts"] == 1
    assert dns_bed.primary.txt_values(f"_acme-challenge.{domain}") == set()
    assert _ledgers(fleet) == []
    assert fleet.ca.orders_created() == 1  # the CA was never asked to validate


def test_an_operator_killed_while_a_record_is_up_leaves_none_after_the_restart(
    start_fleet: Callable[..., Fleet], dns_bed: DnsBed
) -> None:
    fleet = _fleet(start_fleet, dns_bed, propagation_timeout=120)
    domain = f"www-{secrets.token_hex(3)}.{SLOW}"
    name = f"_acme-challenge.{domain}"
    _apply_dns01(fleet, "slow", domain)
    # ns2 is down: the record is up at ns1, and the operator waits for ns2.
    wait_for("the TXT value at ns1", lambda: dns_bed.primary.txt_values(name), 60)
    assert _ledgers(fleet), "the record in flight was not written down"
    assert fleet.install.operator is not None
    fleet.install.operator.kill()
    left = dns_bed.primary.txt_values(name)
    assert left, "the record should still be there after the crash"

    secondary = dns_bed.start_secondary()
    fleet.install.start_operator(fleet.ca, *fleet_operator_args(dns_bed))
    fleet.install.wait_for_condition(fleet.namespace, "slow", "True", "Issued", 90)
    assert dns_bed.primary.txt_values(name) == set()
    wait_for("ns2 has no TXT left", lambda: secondary.txt_values(name) == set(), 30)
    assert _ledgers(fleet) == []


def fleet_operator_args(bed: DnsBed) -> tuple[str, ...]:
    return (
        f"--dns01-resolver=127.0.0.1:{bed.port}",
        f"--dns01-nameserver-port={bed.port}",
        "--dns01-propagation-timeout=60",
        "--dns01-poll-seconds=0.5",
    )


PDNS_ZONE = "pdns.test"


def test_plain_and_wildcard_certificates_through_powerdns_and_lexicon(
    start_fleet: Callable[..., Fleet], tmp_path: Path
) -> None:
    records = [("@", "NS", f"ns1.{PDNS_ZONE}."), ("ns1", "A", "127.0.0.1"), ("*", "A", "127.0.0.1")]
    with PowerDnsServer(tmp_path / "pdns", PDNS_ZONE, records) as pdns:
        fleet = start_fleet(
            acme={"dns_server": ("127.0.0.1", pdns.port)},
            operator_args=(
                f"--dns01-resolver=127.0.0.1:{pdns.port}",
                f"--dns01-nameserver-port={pdns.port}",
                "--dns01-propagation-timeout=20",
                "--dns01-poll-seconds=0.5",
            ),
        )
        fleet.install.apply_secret(
            fleet.namespace,
            "dns-powerdns",
            {"auth_token": pdns.api_key.encode(), "pdns_server": pdns.api_url.encode()},
        )
        acme = {
            "server": fleet.ca.directory_url,
            "challengeType": "DNS-01",
            "dns01": {"provider": "powerdns", "secretRef": {"name": "dns-powerdns"}},
        }
        label = f"p{secrets.token_hex(3)}"
        plain, apex = f"www-{label}.{PDNS_ZONE}", f"{label}.{PDNS_ZONE}"
        fleet.apply_certificate("automatic.yaml", "plain", plain, acme=acme)
        fleet.install.wait_for_condition(fleet.namespace, "plain", "True", "Issued", 60)
        assert _names(fleet, plain) == [plain]
        fleet.apply_certificate(
            "automatic.yaml", "wild", apex, acme=acme, alternativeNames=[f"*.{apex}"]
        )
        fleet.install.wait_for_condition(fleet.namespace, "wild", "True", "Issued", 60)
        assert _names(fleet, apex) == sorted([apex, f"*.{apex}"])
        for name in (plain, apex):
            assert pdns.txt_values(f"_acme-challenge.{name}") == set(), name
        assert _ledgers(fleet) == []
        log = fleet.install.operator.log_path.read_text() if fleet.install.operator else ""
        assert pdns.api_key not in log, "the PowerDNS API key was logged"
