"""The HTTP-01 solver Service follows the Lease holder: two `certfleet operator` processes, each
told its pod's name, label the pod of whichever holds the Lease with certfleet.io/leader=true,
across a SIGKILL of the leader (which cannot remove its own label: the next leader does).

The test bed runs no kubelet and no endpoints controller, so the pods are bare Pod objects
(stored, never run) standing in for the replicas' pods, and the Service's routing is checked
through its own label selector, the one the endpoints controller would use.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable

import pytest
import yaml

from certfleet.kube.leader_label import LEADER_LABEL
from e2e.fleet import Fleet
from e2e.manifests import DEPLOY, SYSTEM
from testbed.control_plane import ControlPlane
from testbed.waiting import wait_for

pytestmark = pytest.mark.testbed


def _solver_selector() -> str:
    service = yaml.safe_load((DEPLOY / "acme-solver-service.yaml").read_text())
    return ",".join(f"{key}={value}" for key, value in service["spec"]["selector"].items())


def _stand_in_pod(name: str) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": SYSTEM,
                "labels": {"app.kubernetes.io/name": "certfleet-operator"},
            },
            "spec": {"containers": [{"name": "operator", "image": "certfleet"}]},
        }
    )


def test_the_solver_selects_the_lease_holder_across_a_sigkill(
    start_fleet: Callable[..., Fleet], control_plane: ControlPlane
) -> None:
    fleet = start_fleet(replicas=0)
    suffix = secrets.token_hex(3)
    lease = f"leader-label-{suffix}"
    first, second = f"operator-{suffix}-a", f"operator-{suffix}-b"
    selector = _solver_selector()
    assert f"{LEADER_LABEL}=true" in selector

    def routed() -> set[str]:
        """The stand-in pods the solver Service's selector picks."""
        found = control_plane.kubectl("get", "pods", "-n", SYSTEM, "-l", selector, "-o", "json")
        names = {pod["metadata"]["name"] for pod in json.loads(found.stdout)["items"]}
        return names & {first, second}

    def holder() -> str:
        found = control_plane.kubectl("get", "lease", lease, "-n", SYSTEM, "-o", "json")
        return str(json.loads(found.stdout)["spec"]["holderIdentity"])

    def start(pod: str) -> None:
        fleet.install.start_operator(
            fleet.ca, f"--lease-name={lease}", f"--identity={pod}", f"--pod-name={pod}"
        )

    for pod in (first, second):
        control_plane.kubectl("apply", "-f", "-", stdin=_stand_in_pod(pod))
    try:
        start(first)
        wait_for(lambda: f"only {first} routed, not {routed()}", lambda: routed() == {first})
        start(second)  # live (a standby answers /healthz), waiting for the Lease
        assert holder() == first
        assert routed() == {first}

        leader, standby = fleet.install.operators
        leader.kill()  # SIGKILL: no chance to remove its label
        wait_for(
            lambda: f"{second} (Lease holder: {holder()}) routed, not {routed()}",
            lambda: routed() == {second},
            timeout=30,
        )
        assert holder() == second

        standby.stop()  # SIGTERM: it steps down and takes its label off
        wait_for(lambda: f"no pod routed, not {routed()}", lambda: routed() == set())
    finally:
        fleet.install.stop_operator()
        control_plane.kubectl("delete", "pod", first, second, "-n", SYSTEM, "--wait=false")
        control_plane.kubectl("delete", "lease", lease, "-n", SYSTEM, "--ignore-not-found")
