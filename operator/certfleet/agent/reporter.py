"""Report this node's state to the ManagedCertificate, under `status.fleet.nodes.<node>`.

One JSON merge patch on the status subresource per report: each agent writes only its own key,
so agents never conflict with each other or with the operator (which owns the rest of status
and writes the summary, see certfleet.api.fleet). A value of None deletes its key (merge patch),
so a cleared error disappears. Nothing reported here comes near a private key: serials, times,
reasons and messages built from public facts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from certfleet.api.names import GROUP, MANAGED_CERTIFICATES, VERSION
from certfleet.core.clock import rfc3339
from certfleet.core.errors import CertfleetError

MAX_ERROR_CHARACTERS = 1024
FIELD_MANAGER = "certfleet-agent"


class ReportError(CertfleetError):
    """The status could not be written; the agent tries again at its next sync."""


@dataclass(frozen=True, slots=True)
class NodeReport:
    reason: str
    served_serial: str | None
    installed_serial: str | None
    last_successful_sync: datetime | None
    last_error: str | None

    def to_status(self) -> dict[str, Any]:
        error = self.last_error
        if error is not None and len(error) > MAX_ERROR_CHARACTERS:
            error = error[: MAX_ERROR_CHARACTERS - 3] + "..."
        return {
            "reason": self.reason,
            "servedSerial": self.served_serial,
            "installedSerial": self.installed_serial,
            "lastSuccessfulSync": (
                None if self.last_successful_sync is None else rfc3339(self.last_successful_sync)
            ),
            "lastError": error,
        }


def node_status_patch(node: str, report: NodeReport) -> dict[str, Any]:
    return {"status": {"fleet": {"nodes": {node: report.to_status()}}}}


class StatusReporter(Protocol):
    def report(self, report: NodeReport) -> None:
        """Raises ReportError when the report did not arrive."""


class NullReporter:
    """No ManagedCertificate configured (a plain VM): metrics and logs only."""

    def report(self, report: NodeReport) -> None:
        return None


class KubernetesStatusReporter:
    """Merge-patches the node's entry on a ManagedCertificate's status subresource."""

    def __init__(self, custom_objects_api: Any, namespace: str, name: str, node: str) -> None:
        self._api = custom_objects_api
        self.namespace = namespace
        self.name = name
        self.node = node

    def report(self, report: NodeReport) -> None:
        # Imported here: a plain VM without a ManagedCertificate never loads the client.
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        body: Mapping[str, Any] = node_status_patch(self.node, report)
        try:
            self._api.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                self.namespace,
                MANAGED_CERTIFICATES,
                self.name,
                body,
                field_manager=FIELD_MANAGER,
                _content_type="application/merge-patch+json",
                _request_timeout=10,
            )
        except ApiException as error:
            raise ReportError(
                f"patching the status of ManagedCertificate {self.namespace}/{self.name}: "
                f"{error.status} {error.reason}"
            ) from None
        except (HTTPError, OSError) as error:
            raise ReportError(
                f"patching the status of ManagedCertificate {self.namespace}/{self.name}: {error}"
            ) from None
