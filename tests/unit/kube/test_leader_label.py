"""LeaderLabel's order and its failures, against a recording stand-in for CoreV1Api (the real
apiserver: tests/e2e/test_leader_label.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import ProtocolError

from certfleet.kube.leader_label import LEADER_LABEL, LeaderLabel


class RecordingPods:
    def __init__(self, labelled: list[str], fail_with: Exception | None = None) -> None:
        self.labelled = labelled
        self.fail_with = fail_with
        self.calls: list[tuple[str, str | None]] = []

    def list_namespaced_pod(self, namespace: str, **options: Any) -> Any:
        assert options["label_selector"].endswith(f",{LEADER_LABEL}=true")
        assert options["_request_timeout"]
        if self.fail_with is not None:
            raise self.fail_with
        pods = [SimpleNamespace(metadata=SimpleNamespace(name=name)) for name in self.labelled]
        return SimpleNamespace(items=pods)

    def patch_namespaced_pod(self, name: str, namespace: str, body: Any, **options: Any) -> Any:
        assert options["_request_timeout"]
        if self.fail_with is not None:
            raise self.fail_with
        self.calls.append((name, body["metadata"]["labels"][LEADER_LABEL]))


def test_claim_unlabels_the_former_leaders_before_labelling_itself() -> None:
    pods = RecordingPods(["op-old", "op-me"])
    assert LeaderLabel("ns", "op-me", api=pods).claim() is True
    assert pods.calls == [("op-old", None), ("op-me", "true")]


@pytest.mark.parametrize(
    "failure", [ApiException(status=403, reason="Forbidden"), ProtocolError("connection refused")]
)
def test_an_apiserver_that_refuses_or_is_unreachable_is_logged_not_raised(
    failure: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    label = LeaderLabel("ns", "op-me", api=RecordingPods([], fail_with=failure))
    assert label.claim() is False
    label.release()
    assert "the solver Service will not reach it" in caplog.text
