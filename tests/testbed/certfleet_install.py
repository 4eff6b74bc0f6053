"""certfleet installed on the test bed: its CRDs, a CloudHost for the real S3 server, and the
operator running as a real process (`certfleet operator`) against the real control plane."""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from testbed.acme_ca import AcmeCA
from testbed.control_plane import ControlPlane
from testbed.processes import ServerProcess, free_port, http_ok
from testbed.s3 import S3Endpoint
from testbed.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
OPERATOR_NAMESPACE = "certfleet-system"
# certfleet from this checkout's virtualenv.
LOCAL_CERTFLEET = (sys.executable, "-m", "certfleet.cli")


def load_example(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "examples" / name).read_text())
    return loaded


def wait_for_crds(control_plane: ControlPlane) -> None:
    """Until the apiserver serves certfleet's kinds: objects of them fail before that."""
    control_plane.kubectl(
        "wait",
        "--for=condition=Established",
        "crd/managedcertificates.certfleet.io",
        "crd/cloudhosts.certfleet.io",
        "--timeout=30s",
    )


def install_crds(control_plane: ControlPlane) -> None:
    control_plane.kubectl("apply", "-k", str(REPO / "crds"))
    wait_for_crds(control_plane)


class CertfleetInstall:
    def __init__(self, control_plane: ControlPlane, workdir: Path) -> None:
        self.control_plane = control_plane
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.http01_port = free_port()
        self.operator: ServerProcess | None = None  # the last one started
        self.operators: list[ServerProcess] = []
        self.metrics_port: int | None = None  # the last started operator's /metrics
        self._operator_starts = 0

    def apply(self, document: dict[str, Any]) -> None:
        self.control_plane.kubectl("apply", "-f", "-", stdin=json.dumps(document))

    def install_crds(self) -> None:
        install_crds(self.control_plane)
        namespace = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": OPERATOR_NAMESPACE},
        }
        self.apply(namespace)

    def create_cloudhost(
        self,
        name: str,
        s3: S3Endpoint,
        bucket: str,
        master_key: bytes | None = None,
        trust_bundle: bytes | None = None,
        allowed_namespaces: Sequence[str] | None = ("*",),
    ) -> bytes:
        """The sandbox CloudHost example, pointed at the real S3 server, with its Secrets.
        Returns the datastore's master key (random unless given). The test bed's CloudHosts
        admit every namespace (each test makes its own); `allowed_namespaces` None leaves the
        field out: the operator's namespace and labelled ones only. `trust_bundle`: the PEM
        roots its certificates may chain to (pebble's root: it is new at every pebble start,
        AcmeCA.issuing_roots_pem); None: the system roots alone, so pebble's are refused."""
        master_key = master_key or secrets.token_bytes(32)
        cloudhost = load_example("cloudhost-sandbox.yaml")
        cloudhost["metadata"]["name"] = name
        spec = cloudhost["spec"]
        spec.update(endpoint=s3.url, region=s3.region, bucket=bucket)
        spec.pop("allowedNamespaces", None)
        if allowed_namespaces is not None:
            spec["allowedNamespaces"] = list(allowed_namespaces)
        spec["credentialsSecretRef"]["name"] = f"{name}-s3-credentials"
        spec["encryptionKeySecretRef"]["name"] = f"{name}-encryption-key"
        if trust_bundle is None:
            del spec["trustBundle"]
        else:
            spec["trustBundle"]["secretRef"]["name"] = f"{name}-trust-bundle"
            self.apply_secret(OPERATOR_NAMESPACE, f"{name}-trust-bundle", {"ca.crt": trust_bundle})
        self.apply_secret(
            OPERATOR_NAMESPACE,
            f"{name}-s3-credentials",
            {"accessKeyID": s3.access_key.encode(), "secretAccessKey": s3.secret_key.encode()},
        )
        self.apply_secret(OPERATOR_NAMESPACE, f"{name}-encryption-key", {"key": master_key})
        self.apply(cloudhost)
        return master_key

    def apply_secret(
        self, namespace: str, name: str, data: dict[str, bytes], type_: str = "Opaque"
    ) -> None:
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": type_,
                "metadata": {"name": name, "namespace": namespace},
                "data": {key: base64.b64encode(value).decode() for key, value in data.items()},
            }
        )

    def start_operator(
        self,
        acme: AcmeCA,
        *extra_args: str,
        command: Sequence[str] = LOCAL_CERTFLEET,
        ca_bundle: Path | None = None,
    ) -> ServerProcess:
        """`certfleet operator` as its own process, trusting pebble's listener. `command` runs
        certfleet (e.g. the image, tests/testbed/image.py); `ca_bundle` is where it finds
        pebble's CA file (default: its path here)."""
        self._operator_starts += 1
        liveness_port = free_port()
        # Its own port per start: the default 0.0.0.0:9090 would clash between test runs.
        self.metrics_port = free_port()
        self.operator = ServerProcess(
            "certfleet-operator",
            [
                *command,
                "operator",
                f"--namespace={OPERATOR_NAMESPACE}",
                f"--http01-listen=127.0.0.1:{self.http01_port}",
                f"--acme-ca-bundle={ca_bundle or acme.listener_ca_bundle}",
                f"--liveness=http://127.0.0.1:{liveness_port}/healthz",
                f"--metrics-listen=127.0.0.1:{self.metrics_port}",
                "--retry-seconds=2",
                "--manual-poll-seconds=1",
                # Short, for quick fail-overs; at 4 s (renewed every 0.8 s, given up after
                # 2.7 s) a loaded 2-core machine now and then let a renewal lapse.
                "--lease-seconds=6",
                *extra_args,
            ],
            self.workdir / f"operator-{self._operator_starts}.log",
            env={
                "KUBECONFIG": str(self.control_plane.admin_kubeconfig),
                "PYTHONUNBUFFERED": "1",
                "PATH": os.environ.get("PATH", ""),
                # As the image sets it (Containerfile): see there.
                "MALLOC_ARENA_MAX": "2",
            },
        )
        self.operators.append(self.operator)
        # A standby replica answers liveness too, while it waits for the lease.
        self.operator.wait_until(
            lambda: http_ok(f"http://127.0.0.1:{liveness_port}/healthz"), what="live"
        )
        return self.operator

    def stop_operator(self) -> None:
        """Stops every operator replica started here."""
        for operator in self.operators:
            operator.stop()

    def managed_certificate(self, namespace: str, name: str) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(
            self.control_plane.kubectl(
                "get", "managedcertificate", name, "-n", namespace, "-o", "json"
            ).stdout
        )
        return found

    def wait_for_condition(
        self,
        namespace: str,
        name: str,
        status: str,
        reason: str | None = None,
        timeout: float = 30,
    ) -> dict[str, Any]:
        """Polls the resource until its Ready condition has `status` (and `reason`)."""
        ready: dict[str, Any] = {}

        def reached() -> dict[str, Any] | None:
            nonlocal ready
            resource = self.managed_certificate(namespace, name)
            conditions = resource.get("status", {}).get("conditions", [])
            ready = next((c for c in conditions if c.get("type") == "Ready"), {})
            if ready.get("status") == status and (reason is None or ready.get("reason") == reason):
                return resource
            return None

        def described() -> str:
            log = self.operator.log_tail(30) if self.operator else ""
            return (
                f"{namespace}/{name} reaching Ready={status} {reason or ''}; Ready is {ready}\n"
                f"operator log:\n{log}"
            )

        return wait_for(described, reached, timeout, interval=0.2)
