"""The DNS-01 solver: TXT records through the fleet's DNS provider, visible at every
authoritative server before the CA is told to look, removed afterwards.

What it publishes is written to a `RecordLedger` *before* each record is added and dropped
only once it is removed, so a record left by a failure or a crash (the operator killed while
a TXT is up) is removed by `remove_leftovers` at the next issuance or start. Two challenges
of one order at one name (`example.com` and `*.example.com`) are two values there: both are
added, both must be visible, each is removed on its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from acme import challenges

from certfleet.acme_issuer.dns01.lookup import DnsLookup, Server
from certfleet.acme_issuer.dns01.records import TxtRecords
from certfleet.acme_issuer.errors import Dns01Error, Dns01PropagationTimeoutError
from certfleet.acme_issuer.solvers import PendingChallenge

log = logging.getLogger(__name__)

DEFAULT_PROPAGATION_TIMEOUT_SECONDS = 120.0
DEFAULT_POLL_INTERVAL_SECONDS = 2.0


@dataclass(frozen=True)
class PublishedRecord:
    """One TXT value certfleet added: `provider` names how to remove it again (the provider
    and its Secret, never the credentials themselves)."""

    provider: str
    zone: str
    fqdn: str
    value: str = field(repr=False)


class RecordLedger(Protocol):
    """Where the records in flight are written down, surviving a restart."""

    def load(self) -> list[PublishedRecord]: ...

    def save(self, records: Sequence[PublishedRecord]) -> None: ...


def remove_leftovers(ledger: RecordLedger, records_for: Callable[[str], TxtRecords]) -> int:
    """Removes every record the ledger still holds (from a failure or a crash); those that
    cannot be removed now stay in it. Returns how many were removed."""
    kept: list[PublishedRecord] = []
    found = ledger.load()
    for record in found:
        try:
            records_for(record.provider).remove_txt(record.zone, record.fqdn, record.value)
        except Dns01Error as error:
            log.warning("could not remove the TXT value left at %s: %s", record.fqdn, error)
            kept.append(record)
    if found:
        ledger.save(kept)
        log.info("removed %d TXT value(s) left from an earlier issuance", len(found) - len(kept))
    return len(found) - len(kept)


class Dns01Solver:
    """One issuance's DNS-01 answers (built per issuance: it remembers what it added)."""

    challenge_type = challenges.DNS01
    validates_wildcards = True

    def __init__(
        self,
        records: TxtRecords,
        provider: str,
        lookup: DnsLookup,
        ledger: RecordLedger,
        propagation_timeout: float = DEFAULT_PROPAGATION_TIMEOUT_SECONDS,
        poll_interval: float = DEFAULT_POLL_INTERVAL_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.records = records
        self.provider = provider
        self.lookup = lookup
        self.ledger = ledger
        self.propagation_timeout = propagation_timeout
        self.poll_interval = poll_interval
        self._sleep = sleep
        self._monotonic = monotonic
        self._published: list[PublishedRecord] = []
        self.propagation_seconds: float | None = None  # how long the last wait took

    def present(self, pending: Sequence[PendingChallenge], deadline: float) -> None:
        wanted: list[PublishedRecord] = []
        for challenge in pending:
            fqdn = self.lookup.challenge_target(challenge.domain)
            zone = self.lookup.zone_of(fqdn)
            wanted.append(PublishedRecord(self.provider, zone, fqdn, challenge.validation))
        if not wanted:
            return
        # Written down before the first add: a crash right after it still leaves a trace.
        self.ledger.save([*self.ledger.load(), *wanted])
        for record in wanted:
            self._published.append(record)
            self.records.add_txt(record.zone, record.fqdn, record.value)
            log.info("published a TXT value at %s (zone %s)", record.fqdn, record.zone)
        self._wait_until_visible(wanted, deadline)

    def cleanup(self, pending: Sequence[PendingChallenge]) -> None:
        published, self._published = self._published, []
        removed: list[PublishedRecord] = []
        for record in published:
            try:
                self.records.remove_txt(record.zone, record.fqdn, record.value)
                removed.append(record)
            except Dns01Error as error:
                # Stays in the ledger: the next issuance (or start) tries again.
                log.warning("could not remove the TXT value at %s: %s", record.fqdn, error)
        try:
            left = list(self.ledger.load())
            for record in removed:
                if record in left:
                    left.remove(record)
            self.ledger.save(left)
        except Exception as error:  # cleanup never raises: the ledger is swept later
            log.warning("could not update the DNS-01 record ledger: %s", error)

    def _wait_until_visible(self, records: Sequence[PublishedRecord], deadline: float) -> None:
        started = self._monotonic()
        give_up = min(deadline, started + self.propagation_timeout)
        servers: dict[str, list[Server]] = {}
        for record in records:
            if record.zone not in servers:
                servers[record.zone] = self.lookup.authoritative_servers(record.zone)
        missing: list[str] = []
        while True:
            missing = [
                f"{record.fqdn} at {host}:{port}"
                for record in records
                for host, port in servers[record.zone]
                if not self._visible(record, (host, port))
            ]
            if not missing:
                self.propagation_seconds = self._monotonic() - started
                log.info(
                    "TXT values visible at every authoritative server after %.1f s",
                    self.propagation_seconds,
                )
                return
            if self._monotonic() + self.poll_interval > give_up:
                break
            self._sleep(self.poll_interval)
        waited = self._monotonic() - started
        raise Dns01PropagationTimeoutError(
            f"DNS01PropagationTimeout: after {waited:.0f} s the TXT value was still not "
            f"visible for {', '.join(sorted(set(missing))[:6])}"
        )

    def _visible(self, record: PublishedRecord, server: Server) -> bool:
        try:
            return record.value in self.lookup.txt_values(server, record.fqdn)
        except Dns01Error as error:
            log.info("asking %s:%d for %s: %s", *server, record.fqdn, error)
            return False
