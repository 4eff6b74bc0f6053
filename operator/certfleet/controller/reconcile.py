"""One reconciliation, in one direction: gather -> decide -> act -> report.

Nothing climbs back up: the decision is taken on what was gathered, the plan is announced
before a long ACME order starts, the outcome is reported once at the end.
"""

from __future__ import annotations

from certfleet.controller.act import act
from certfleet.controller.decide import DecisionSettings, decide
from certfleet.controller.gather import gather
from certfleet.controller.plan import Issue, Outcome, Request
from certfleet.controller.ports import Ports, Reporter
from certfleet.core.clock import Clock


class Reconciler:
    """Shared by kopf's handler threads; holds no state of one reconciliation."""

    def __init__(
        self, ports: Ports, clock: Clock, settings: DecisionSettings | None = None
    ) -> None:
        self._ports = ports
        self._clock = clock
        self._settings = settings or DecisionSettings()

    def reconcile(self, request: Request, reporter: Reporter) -> Outcome:
        observed = gather(request, self._ports)
        plan = decide(observed, self._clock(), self._settings)
        if isinstance(plan, Issue):
            reporter.issuing(plan.announcement)
        outcome = act(plan, observed, self._ports, self._clock, self._settings)
        reporter.report(outcome)
        return outcome
