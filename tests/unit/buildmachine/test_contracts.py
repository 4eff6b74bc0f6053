"""The operator and the build machine share the decision: both reach the one
`controller.decide` through the one `controller.reconcile`, and the build machine has no
judgement of its own (pyproject.toml's contracts forbid it the policy and Kubernetes)."""

from __future__ import annotations

import grimp
import pytest

PROGRAMS = ("certfleet.controller.main", "certfleet.buildmachine.main")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("certfleet")


@pytest.mark.parametrize("program", PROGRAMS)
def test_each_program_runs_the_controllers_reconciler(
    graph: grimp.ImportGraph, program: str
) -> None:
    assert "certfleet.controller.reconcile" in graph.find_modules_directly_imported_by(program)
    assert "certfleet.controller.decide" in graph.find_modules_directly_imported_by(
        "certfleet.controller.reconcile"
    )


def test_the_build_machine_judges_no_certificate_itself(graph: grimp.ImportGraph) -> None:
    own = graph.find_descendants("certfleet.buildmachine") | {"certfleet.buildmachine"}
    for module in own:
        imported = graph.find_modules_directly_imported_by(module)
        assert not imported & {"certfleet.core.policy", "certfleet.core.renewal"}, module
        assert not any(name.startswith(("kopf", "kubernetes")) for name in imported), module
