"""The agent's loop: follow the datastore pointers, install what they name, reload once,
confirm, report.

One sync, for every certificate the agent serves:

1. Gather: a conditional GET of each `current.json` (If-None-Match: the last ETag). Unchanged:
   nothing is downloaded, and if the last revision was handled well that is a successful sync
   (every `recheck_interval` the node's files and served leaf are checked again, locally).
2. Decide: for each changed pointer (or a failed attempt due for a retry), if the installed
   files already have the pointer's digests nothing is downloaded, else the revision is fetched
   and every digest checked (S3Datastore.read_revision); then the pure decision
   (certfleet.agent.decision): install, keep, or refuse and why.
3. Act, as one batch: every certificate to install is switched in atomically, then each
   webserver serving one of them (a node may run several: an nginx for the site, an Apache for
   the auth server) has its config test run once and reloads gracefully once, then a TLS
   handshake per name (SNI) confirms each new leaf is served. A failed test or reload restores
   the previous files of that webserver's part of the batch (and reloads it again after a
   failed reload); the other webservers go on.
4. Report: metrics, the log, and each certificate's node entry in its ManagedCertificate.

What the node serves is never touched by a failure: refusals, an unreachable S3 and a broken
webserver config all leave the previous certificates in place.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from certfleet.agent.certificate import (
    CertificateSettings,
    CertificateSync,
    Due,
    Pending,
    SyncResult,
)
from certfleet.agent.decision import NodeReason, SyncReason
from certfleet.agent.installer import InstallError
from certfleet.agent.metrics import RELOAD_FAILED, RELOAD_SUCCESS, RELOAD_TEST_FAILED, AgentMetrics
from certfleet.agent.probe import ServedCertificate
from certfleet.agent.webserver import Webserver

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AgentSettings:
    node: str
    poll_interval: float = 60.0
    # After a failed install, retry the same revision after interval * 2^n, at most this long.
    max_backoff: float = 300.0
    # False: install only, for the init step before the webserver runs (`--once --no-reload`).
    reload: bool = True
    force: bool = False  # allow a downgrade
    probe_timeout: float = 10.0
    # Even without a change, refresh lastSuccessfulSync in the status this often.
    report_interval: float = 300.0
    # Even with an unchanged datastore, check the node this often: the files are still the
    # pointer's and the webserver serves them (a hand-edit or a restart with other files is
    # repaired; nothing is downloaded unless the files changed).
    recheck_interval: float = 300.0

    def for_certificates(self) -> CertificateSettings:
        return CertificateSettings(
            poll_interval=self.poll_interval,
            max_backoff=self.max_backoff,
            reload=self.reload,
            force=self.force,
            probe_timeout=self.probe_timeout,
            report_interval=self.report_interval,
            recheck_interval=self.recheck_interval,
        )


def overall(results: Sequence[tuple[str, SyncResult]]) -> SyncResult:
    """One result for the whole sync: one certificate's own, or all good only if each is."""
    if len(results) == 1:
        return results[0][1]
    failed = [result for _, result in results if not result.ok]
    installed = any(result.reason is SyncReason.Installed for _, result in results)
    reason: NodeReason = (
        failed[0].reason if failed else SyncReason.Installed if installed else SyncReason.UpToDate
    )
    message = "; ".join(f"{domain}: {result.message}" for domain, result in results)
    return SyncResult(not failed, reason, message)


class Agent:
    def __init__(
        self,
        settings: AgentSettings,
        certificates: Sequence[CertificateSync],
        webserver: Webserver | None,
        metrics: AgentMetrics,
        *,
        webservers: Mapping[str, Webserver] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`webserver` serves every certificate; or `webservers` names each domain's own."""
        if not certificates:
            raise ValueError("an agent serves at least one certificate")
        domains = [certificate.domain for certificate in certificates]
        if len(set(domains)) != len(domains):
            raise ValueError(f"a domain is listed twice: {domains}")
        if webserver is not None and webservers:
            raise ValueError("give one webserver for all certificates or one per domain")
        served_by = dict(webservers or {})
        if webserver is not None:
            served_by = dict.fromkeys(domains, webserver)
        if settings.reload and set(served_by) != set(domains):
            missing = sorted(set(domains) - set(served_by))
            raise ValueError(f"a webserver is needed unless reloading is off: {missing}")
        self.settings = settings
        self.certificates = tuple(certificates)
        self._webservers = served_by
        self._metrics = metrics
        self._monotonic = monotonic
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self.results: dict[str, SyncResult] = {}

    # -- the loop -----------------------------------------------------------------------

    def run(self) -> None:
        """Sync every poll interval (sooner after `request_sync`) until `stop`."""
        while not self._stopping.is_set():
            started = self._monotonic()
            try:
                self.sync_once()
            except Exception:  # a bug must not stop the node from ever syncing again
                log.exception("unexpected error during a sync; trying again next interval")
            elapsed = self._monotonic() - started
            self._wake.wait(max(0.0, self.settings.poll_interval - elapsed))
            self._wake.clear()

    def request_sync(self) -> None:
        """A hint that the datastore changed (a ManagedCertificate's status moved)."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    @property
    def served(self) -> ServedCertificate | None:
        """The first certificate's served leaf (the only one, for a single domain)."""
        return self.certificates[0].state.served

    @property
    def last_result(self) -> tuple[NodeReason | None, str | None]:
        state = self.certificates[0].state
        return state.reason, state.error

    # -- one sync -----------------------------------------------------------------------

    def sync_once(self) -> SyncResult:
        due: list[tuple[CertificateSync, Due]] = []
        results: dict[str, SyncResult] = {}
        for certificate in self.certificates:
            gathered = certificate.gather()
            if isinstance(gathered, Due):
                due.append((certificate, gathered))
            elif gathered.recorded:
                results[certificate.domain] = certificate.record(gathered.result)
            else:
                results[certificate.domain] = gathered.result
        if due:
            results.update(self._handle(due))
        self.results = results
        return overall([(each.domain, results[each.domain]) for each in self.certificates])

    def _handle(self, due: Sequence[tuple[CertificateSync, Due]]) -> dict[str, SyncResult]:
        """Decide and install each, then reload once for all that changed (under the
        installers' locks, which exclude a cron `--once` beside the daemon)."""
        outcomes: dict[str, SyncResult] = {}
        with contextlib.ExitStack() as locks:
            pending: list[tuple[CertificateSync, Pending]] = []
            # Sorted: two agents sharing some domains take their locks in the same order.
            for certificate, step in sorted(due, key=lambda each: each[0].installer.name):
                try:
                    locks.enter_context(certificate.installer.locked())
                except InstallError as error:
                    outcomes[certificate.domain] = SyncResult(
                        False, SyncReason.InstallFailed, str(error)
                    )
                    continue
                prepared = certificate.prepare(step)
                if isinstance(prepared, Pending):
                    pending.append((certificate, prepared))
                else:
                    outcomes[certificate.domain] = prepared
            for webserver, group in self._by_webserver(pending):
                outcomes.update(self._reload_and_confirm(webserver, group))
        return {
            certificate.domain: certificate.conclude(outcomes[certificate.domain])
            for certificate, _ in due
        }

    def _by_webserver(
        self, pending: Sequence[tuple[CertificateSync, Pending]]
    ) -> list[tuple[Webserver, list[tuple[CertificateSync, Pending]]]]:
        """The batch split by the webserver serving each certificate, in the batch's order."""
        groups: dict[int, tuple[Webserver, list[tuple[CertificateSync, Pending]]]] = {}
        for certificate, step in pending:
            webserver = self._webservers[certificate.domain]
            groups.setdefault(id(webserver), (webserver, []))[1].append((certificate, step))
        return list(groups.values())

    def _reload_and_confirm(
        self, webserver: Webserver, batch: Sequence[tuple[CertificateSync, Pending]]
    ) -> dict[str, SyncResult]:
        test = webserver.test()
        if not test.ok:
            self._metrics.reloaded(RELOAD_TEST_FAILED)
            return self._rolled_back(
                webserver,
                batch,
                SyncReason.ConfigTestFailed,
                "the webserver's configuration test failed",
                test.detail,
                reload_again=False,
            )
        reload = webserver.reload()
        if not reload.ok:
            self._metrics.reloaded(RELOAD_FAILED)
            return self._rolled_back(
                webserver,
                batch,
                SyncReason.ReloadFailed,
                "the webserver's reload failed",
                reload.detail,
                reload_again=True,
            )
        self._metrics.reloaded(RELOAD_SUCCESS)
        if len(batch) > 1:
            log.info(
                "reloaded once for %d certificates: %s",
                len(batch),
                ", ".join(certificate.domain for certificate, _ in batch),
            )
        return {certificate.domain: certificate.confirm(step) for certificate, step in batch}

    def _rolled_back(
        self,
        webserver: Webserver,
        batch: Sequence[tuple[CertificateSync, Pending]],
        reason: SyncReason,
        what: str,
        detail: str,
        *,
        reload_again: bool,
    ) -> dict[str, SyncResult]:
        """Restore the previous files of the webserver's batch (and reload them again)."""
        restored = {
            certificate.domain: certificate.restore(step.switch) for certificate, step in batch
        }
        again = ""
        if reload_again:
            result = webserver.reload()
            again = (
                " and reloaded"
                if result.ok
                else f" (the reload after that failed too: {result.detail})"
            )
        others = len(batch) - 1
        batch_note = f" (with {others} other certificate{'s' * (others > 1)})" if others else ""
        outcomes = {}
        for certificate, _ in batch:
            certificate.refresh_served()
            outcomes[certificate.domain] = SyncResult(
                False,
                reason,
                f"{what}{batch_note}, {restored[certificate.domain]}{again}: {detail}",
            )
        return outcomes
