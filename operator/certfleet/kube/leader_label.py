"""The Lease holder's pod carries the label certfleet.io/leader=true, which the HTTP-01 solver
Service selects: challenge tokens live in the leader's memory, so the CA's validation requests
must reach that pod and no other.

The leader labels its own pod when it takes the Lease and unlabels it when it steps down. A
leader that was killed cannot unlabel itself, so the next leader first removes the label from
every other operator pod, then puts it on its own: at no moment do two pods carry it.
Failures are logged, not raised: the Lease, not the label, decides who acts.
"""

from __future__ import annotations

import logging
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

LEADER_LABEL = "certfleet.io/leader"
REQUEST_TIMEOUT_SECONDS = 10
# What a request to the apiserver raises: its answer, or no answer (refused, timed out).
_FAILURES = (ApiException, HTTPError, OSError)

log = logging.getLogger(__name__)


class LeaderLabel:
    """Labels `pod` in `namespace` as the leader; `peers` selects the other replicas' pods."""

    def __init__(
        self,
        namespace: str,
        pod: str,
        peers: str = "app.kubernetes.io/name=certfleet-operator",
        api: client.CoreV1Api | None = None,
    ) -> None:
        self.namespace = namespace
        self.pod = pod
        self.peers = peers
        self._api = api or client.CoreV1Api()

    def claim(self) -> bool:
        """Unlabels the other pods that still say they lead, then labels this one."""
        try:
            stale = self._api.list_namespaced_pod(
                self.namespace,
                label_selector=f"{self.peers},{LEADER_LABEL}=true",
                _request_timeout=REQUEST_TIMEOUT_SECONDS,
            )
            for pod in stale.items:
                if pod.metadata.name != self.pod:
                    log.info(
                        "removing %s from %s, a former leader", LEADER_LABEL, pod.metadata.name
                    )
                    self._label(pod.metadata.name, None)
            self._label(self.pod, "true")
        except _FAILURES as error:
            log.error(
                "labelling pod %s/%s as the leader failed (%s): the solver Service will not "
                "reach it",
                self.namespace,
                self.pod,
                _describe(error),
            )
            return False
        return True

    def release(self) -> None:
        """Unlabels this pod (on stepping down); a pod already gone is fine."""
        try:
            self._label(self.pod, None)
        except _FAILURES as error:
            if not (isinstance(error, ApiException) and error.status == 404):
                log.warning(
                    "removing %s from pod %s failed: %s", LEADER_LABEL, self.pod, _describe(error)
                )

    def _label(self, pod: str, value: str | None) -> Any:
        # A merge patch: null removes the label.
        body = {"metadata": {"labels": {LEADER_LABEL: value}}}
        return self._api.patch_namespaced_pod(
            pod, self.namespace, body, _request_timeout=REQUEST_TIMEOUT_SECONDS
        )


def _describe(error: Exception) -> str:
    if isinstance(error, ApiException):
        return f"{error.status} {error.reason}"
    return f"{type(error).__name__}: {error}"
