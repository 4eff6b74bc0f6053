"""The DNS-01 solver against in-memory DNS: what it adds, waits for and removes."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from certfleet.acme_issuer.dns01.lookup import Server
from certfleet.acme_issuer.dns01.solver import Dns01Solver, PublishedRecord, remove_leftovers
from certfleet.acme_issuer.errors import Dns01Error, Dns01PropagationTimeoutError
from certfleet.acme_issuer.solvers import PendingChallenge

NS1, NS2 = ("192.0.2.1", 53), ("192.0.2.2", 53)


class FakeDns:
    """A provider, a lookup and the zone's two nameservers in one: ns2 lags behind ns1
    by `lag` checks, or never gets anything (`lag` None)."""

    def __init__(self, lag: int | None = 0, cnames: dict[str, str] | None = None) -> None:
        self.values: dict[str, list[str]] = {}
        self.lag = lag
        self.cnames = cnames or {}
        self.checks = 0
        self.log: list[str] = []

    # TxtRecords
    def add_txt(self, zone: str, fqdn: str, value: str) -> None:
        self.log.append(f"add {fqdn}")
        self.values.setdefault(fqdn, []).append(value)

    def remove_txt(self, zone: str, fqdn: str, value: str) -> None:
        self.log.append(f"remove {fqdn}")
        self.values[fqdn].remove(value)

    # DnsLookup
    def challenge_target(self, domain: str) -> str:
        name = f"_acme-challenge.{domain}"
        return self.cnames.get(name, name)

    def zone_of(self, fqdn: str) -> str:
        return fqdn.split(".", 2)[-1] if fqdn.count(".") > 2 else fqdn.split(".", 1)[-1]

    def authoritative_servers(self, zone: str) -> list[Server]:
        return [NS1, NS2]

    def txt_values(self, server: Server, fqdn: str) -> set[str]:
        self.checks += 1
        if server == NS2 and (self.lag is None or self.checks <= self.lag):
            return set()
        return set(self.values.get(fqdn, []))


class MemoryLedger:
    def __init__(self, records: Sequence[PublishedRecord] = ()) -> None:
        self.records = list(records)
        self.saves: list[list[PublishedRecord]] = []

    def load(self) -> list[PublishedRecord]:
        return list(self.records)

    def save(self, records: Sequence[PublishedRecord]) -> None:
        self.records = list(records)
        self.saves.append(list(records))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _solver(dns: FakeDns, ledger: MemoryLedger, clock: Clock, timeout: float = 10) -> Dns01Solver:
    return Dns01Solver(
        dns,
        "rfc2136:ns/secret",
        dns,  # type: ignore[arg-type]
        ledger,
        propagation_timeout=timeout,
        poll_interval=1,
        sleep=clock.sleep,
        monotonic=lambda: clock.now,
    )


APEX = PendingChallenge("example.com", "t" * 43, "value-apex")
WILDCARD = PendingChallenge("example.com", "u" * 43, "value-wildcard")


def test_two_values_at_one_name_are_both_up_then_each_removed() -> None:
    dns, ledger, clock = FakeDns(lag=3), MemoryLedger(), Clock()
    solver = _solver(dns, ledger, clock)
    solver.present([APEX, WILDCARD], deadline=1000)
    assert dns.values["_acme-challenge.example.com"] == ["value-apex", "value-wildcard"]
    assert clock.now > 0, "ns2 lagged: the solver waited for it"
    # Written down before the first record was added.
    assert [r.value for r in ledger.saves[0]] == ["value-apex", "value-wildcard"]
    solver.cleanup([APEX, WILDCARD])
    assert dns.values["_acme-challenge.example.com"] == []
    assert ledger.records == []


def test_a_record_never_visible_everywhere_times_out_naming_the_server() -> None:
    dns, ledger, clock = FakeDns(lag=None), MemoryLedger(), Clock()
    solver = _solver(dns, ledger, clock, timeout=5)
    with pytest.raises(Dns01PropagationTimeoutError, match=r"192\.0\.2\.2:53") as raised:
        solver.present([APEX], deadline=1000)
    assert raised.value.reason == "DNS01PropagationTimeout"
    assert clock.now <= 5
    solver.cleanup([APEX])
    assert dns.values["_acme-challenge.example.com"] == [] and ledger.records == []


def test_the_issuance_deadline_bounds_the_wait_too() -> None:
    dns, clock = FakeDns(lag=None), Clock()
    with pytest.raises(Dns01PropagationTimeoutError):
        _solver(dns, MemoryLedger(), clock, timeout=100).present([APEX], deadline=3)
    assert clock.now <= 3


def test_a_cname_sends_the_record_to_its_target() -> None:
    dns = FakeDns(cnames={"_acme-challenge.example.com": "example.com.acme.example.net"})
    _solver(dns, MemoryLedger(), Clock()).present([APEX], deadline=1000)
    assert dns.values == {"example.com.acme.example.net": ["value-apex"]}


def test_leftovers_are_removed_and_failures_kept() -> None:
    dns = FakeDns()
    dns.values["_acme-challenge.a.example"] = ["old"]
    kept = PublishedRecord("other:ns/x", "b.example", "_acme-challenge.b.example", "v")
    ledger = MemoryLedger(
        [PublishedRecord("rfc2136:ns/s", "a.example", "_acme-challenge.a.example", "old"), kept]
    )

    def records_for(provider: str) -> FakeDns:
        if provider.startswith("other"):
            raise Dns01Error("provider down")
        return dns

    assert remove_leftovers(ledger, records_for) == 1
    assert dns.values["_acme-challenge.a.example"] == []
    assert ledger.records == [kept]


def test_a_failed_removal_stays_in_the_ledger() -> None:
    dns, ledger = FakeDns(), MemoryLedger()
    solver = _solver(dns, ledger, Clock())
    solver.present([APEX], deadline=1000)

    def broken(zone: str, fqdn: str, value: str) -> None:
        raise Dns01Error("provider down")

    dns.remove_txt = broken  # type: ignore[method-assign]
    solver.cleanup([APEX])  # never raises
    assert [r.value for r in ledger.records] == ["value-apex"]
