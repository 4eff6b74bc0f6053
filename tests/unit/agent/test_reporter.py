"""The node's status report: its shape, bounds, and how API failures surface."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from certfleet.agent.reporter import (
    MAX_ERROR_CHARACTERS,
    KubernetesStatusReporter,
    NodeReport,
    ReportError,
    node_status_patch,
)

REPORT = NodeReport(
    reason="Installed",
    served_serial="0a1b",
    installed_serial="0a1b",
    last_successful_sync=datetime(2030, 6, 1, 12, 0, 5, 123, tzinfo=UTC),
    last_error=None,
)


class FakeApi:
    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        self.error = error

    def patch_namespaced_custom_object_status(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append((args, kwargs))
        if self.error:
            raise self.error


def test_the_patch_touches_only_this_nodes_entry() -> None:
    assert node_status_patch("node-a", REPORT) == {
        "status": {
            "fleet": {
                "nodes": {
                    "node-a": {
                        "reason": "Installed",
                        "servedSerial": "0a1b",
                        "installedSerial": "0a1b",
                        "lastSuccessfulSync": "2030-06-01T12:00:05Z",
                        # None deletes the key in a merge patch: a cleared error goes away.
                        "lastError": None,
                    }
                }
            }
        }
    }


def test_a_long_error_is_cut() -> None:
    long = NodeReport("ConfigTestFailed", None, None, None, "x" * 5000)
    error = long.to_status()["lastError"]
    assert len(error) == MAX_ERROR_CHARACTERS and error.endswith("...")


def test_the_reporter_merge_patches_the_status_subresource() -> None:
    api = FakeApi()
    KubernetesStatusReporter(api, "shop", "shop-cert", "node-a").report(REPORT)
    [(args, kwargs)] = api.calls
    assert args[:5] == ("certfleet.io", "v1alpha1", "shop", "managedcertificates", "shop-cert")
    assert args[5] == node_status_patch("node-a", REPORT)
    assert kwargs["_content_type"] == "application/merge-patch+json"
    assert kwargs["field_manager"] == "certfleet-agent"


@pytest.mark.parametrize(
    "error", [ApiException(status=403, reason="Forbidden"), ConnectionRefusedError("refused")]
)
def test_api_failures_are_report_errors(error: Exception) -> None:
    reporter = KubernetesStatusReporter(FakeApi(error), "shop", "shop-cert", "node-a")
    with pytest.raises(ReportError, match="shop/shop-cert"):
        reporter.report(REPORT)
