"""Exactly one acting operator, also while the API server goes away and comes back.

The failure this guards against: a connection error killed the leader's lease renewal, the
leader went on acting without renewing, the standby took the expired Lease, and both acted
(doubled orders, failed validations). Each replica exports certfleet_operator_leader (1 while
it acts); it is sampled on both all along, and the sum must never exceed one.
"""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from e2e.fleet import Fleet, new_domain
from testbed.control_plane import ControlPlane
from testbed.processes import ServerProcess
from testbed.waiting import wait_for

LEASE_SECONDS = 6  # the test bed's --lease-seconds: a standby takes over after 6 s unseen


def acting(operator: ServerProcess) -> bool:
    """Whether the replica says it acts (its metric); a dead or unreachable one does not."""
    port = next(a.rsplit(":", 1)[1] for a in operator.argv if a.startswith("--metrics-listen="))
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as answer:
            text = answer.read().decode()
    except OSError:
        return False
    return "\ncertfleet_operator_leader 1.0" in text


class Sampler(threading.Thread):
    """Counts the acting replicas every 50 ms until stopped; remembers the highest count."""

    def __init__(self, operators: list[ServerProcess]) -> None:
        super().__init__(daemon=True)
        self.operators = operators
        self.stop = threading.Event()
        self.samples = 0
        self.most = 0

    def run(self) -> None:
        while not self.stop.wait(0.05):
            self.most = max(self.most, sum(acting(o) for o in self.operators))
            self.samples += 1


@pytest.mark.testbed
def test_an_api_server_restart_never_leaves_two_acting_operators(
    start_fleet: Callable[..., Fleet], tmp_path: Path
) -> None:
    with ControlPlane(tmp_path / "own-control-plane") as plane:
        fleet = start_fleet(replicas=2, plane=plane)
        operators = list(fleet.install.operators)
        wait_for("one replica acting", lambda: sum(acting(o) for o in operators) == 1, 30)
        sampler = Sampler(operators)
        sampler.start()
        try:
            plane.stop_apiserver()
            # Down for three lease durations: the leader cannot renew and must stop acting
            # before anyone may take over.
            leader_stopped = wait_for(
                "the leader to stop acting without the API server",
                lambda: sum(acting(o) for o in operators) == 0,
                3 * LEASE_SECONDS,
            )
            plane.start_apiserver()
            wait_for(
                "a replica acting again",
                lambda: sum(acting(o) for o in operators) == 1,
                10 * LEASE_SECONDS,
            )
            # Any replica still alive acts at most alone; a new certificate gets one order.
            domain = new_domain()
            orders = fleet.ca.orders_created()
            fleet.apply_certificate("automatic.yaml", "after-restart", domain)
            fleet.install.wait_for_condition(fleet.namespace, "after-restart", "True", timeout=60)
            assert fleet.ca.orders_created() == orders + 1
        finally:
            sampler.stop.set()
            sampler.join(5)
            fleet.close()  # while its control plane still runs
        assert leader_stopped
        assert sampler.samples > 100, sampler.samples
        assert sampler.most == 1, f"{sampler.most} replicas acted at once"
