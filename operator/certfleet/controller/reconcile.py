"""One reconciliation, in one direction: gather -> decide -> act -> report.

Nothing climbs back up: the decision is taken on what was gathered, the plan is announced
before a long ACME order starts, the outcome is reported once at the end.

Before anything happens at a location, the resource claims it (``core.ownership``): the
claim is written, then the world as gathered is decided again, as the owner's: an order goes
on to its lease (which gathers the world again anyway); a lost claim gathers it again first.

An order happens only under the datastore's order lease of the certificate's location: several
certfleets sharing a bucket (build machines, a cluster) would otherwise each order. After the
lease is taken the world is gathered and decided again, since another machine may have
published while this one looked; a lease held elsewhere makes the plan a Wait.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import socket
from dataclasses import dataclass, field
from datetime import timedelta

from certfleet.api.reasons import EventReason
from certfleet.controller.act import act
from certfleet.controller.decide import (
    DecisionSettings,
    decide,
    wait_after,
    wait_for_other_order,
)
from certfleet.controller.gather import gather, unobservable
from certfleet.controller.plan import (
    ClaimLocation,
    Event,
    Issue,
    Observed,
    Outcome,
    Ownership,
    Request,
)
from certfleet.controller.ports import Ports, Reporter
from certfleet.core.clock import Clock
from certfleet.core.errors import CertfleetError
from certfleet.datastore.errors import DatastoreConflictError
from certfleet.datastore.protocol import LeaseHeld, LeaseTaken, LocationClaim

log = logging.getLogger(__name__)


def default_holder() -> str:
    """Host, process and a random part, for a Reconciler not told who it is (the programs
    give stable names: their next run may take the lease a killed one left)."""
    return f"{socket.gethostname()[:200]}-{os.getpid()}-{secrets.token_hex(4)}"


@dataclass(frozen=True)
class OrderLease:
    holder: str = field(default_factory=default_holder)
    # Much longer than an order takes (the issuer's deadline is 120 s), so a slow order keeps
    # it; a holder that died frees it after this.
    duration: timedelta = timedelta(minutes=10)


class Reconciler:
    """Shared by kopf's handler threads; holds no state of one reconciliation."""

    def __init__(
        self,
        ports: Ports,
        clock: Clock,
        settings: DecisionSettings | None = None,
        lease: OrderLease | None = None,
    ) -> None:
        self._ports = ports
        self._clock = clock
        self._settings = settings or DecisionSettings()
        self._lease = lease or OrderLease()

    def reconcile(self, request: Request, reporter: Reporter) -> Outcome:
        observed = gather(request, self._ports)
        plan = decide(observed, self._clock(), self._settings)
        claimed: tuple[Event, ...] = ()
        if isinstance(plan, ClaimLocation) and isinstance(observed, Observed):
            # The claim first, then the decision as the owner's, on the world as gathered:
            # an order gathers it again under its lease (below), and a publish is conditional
            # on the pointer read. Only a lost claim needs the world gathered again.
            written = self._claim(plan, observed)
            if isinstance(written, Outcome):
                reporter.report(written)
                return written
            claimed, claim = written
            if claim is not None:
                ownership = Ownership(admitted=True, claim=claim, claim_owner_exists=None)
                observed = dataclasses.replace(observed, ownership=ownership)
            else:
                observed = gather(request, self._ports)
            plan = decide(observed, self._clock(), self._settings)
        taken: LeaseTaken | None = None
        if isinstance(plan, Issue) and isinstance(observed, Observed):
            outcome, taken = self._order_under_lease(plan, observed, reporter)
        else:
            outcome = act(plan, observed, self._ports, self._clock, self._settings)
        if claimed:
            outcome = dataclasses.replace(outcome, events=(*claimed, *outcome.events))
        try:
            reporter.report(outcome)
        finally:
            # After the report: the certificate is Ready a request sooner, and the lease
            # only has to outlast the order, which is over.
            if taken is not None and isinstance(observed, Observed):
                self._release(observed, taken)
        return outcome

    def _claim(
        self, plan: ClaimLocation, observed: Observed
    ) -> tuple[tuple[Event, ...], LocationClaim | None] | Outcome:
        """Writes the location's claim: its event and the claim written, or the outcome of a
        failed write. A claimant that was faster is no failure (no claim): the decision on
        the world gathered next names it."""
        location = observed.location
        try:
            claim = observed.datastore.claim(location, plan.owner, self._clock(), plan.replacing)
        except DatastoreConflictError:
            return (), None
        except CertfleetError as error:
            failed = wait_after(unobservable(error), self._settings)
            return act(failed, observed, self._ports, self._clock, self._settings)
        if plan.replacing is None:
            what = EventReason.LocationOwned, f"claimed {location.s3_uri}: it owns it now"
        else:
            what = EventReason.LocationTakenOver, f"{location.s3_uri}: {plan.verdict.message}"
        return (Event("Normal", *what),), claim

    def _order_under_lease(
        self, plan: Issue, observed: Observed, reporter: Reporter
    ) -> tuple[Outcome, LeaseTaken | None]:
        """The outcome, and the lease taken for it, which the caller gives back (after its
        report); a failure here gives it back itself."""
        datastore, location, now = observed.datastore, observed.location, self._clock()
        try:
            taken = datastore.take_lease(location, self._lease.holder, now, self._lease.duration)
        except CertfleetError as error:
            failed = wait_after(unobservable(error), self._settings)
            return act(failed, observed, self._ports, self._clock, self._settings), None
        if isinstance(taken, LeaseHeld):
            waiting = wait_for_other_order(plan, taken.lease, location.s3_uri, now, self._settings)
            return act(waiting, observed, self._ports, self._clock, self._settings), None
        try:
            again = gather(observed.request, self._ports)
            plan_now = decide(again, self._clock(), self._settings)
            if isinstance(plan_now, Issue):
                reporter.issuing(plan_now.announcement)
            return act(plan_now, again, self._ports, self._clock, self._settings), taken
        except BaseException:
            self._release(observed, taken)
            raise

    def _release(self, observed: Observed, taken: LeaseTaken) -> None:
        try:
            observed.datastore.release_lease(observed.location, taken)
        except CertfleetError as error:  # it expires by itself
            log.warning("could not give the order lease of %s back: %s", observed.location, error)
