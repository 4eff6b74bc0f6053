"""deploy/'s kustomizations as the test bed's kubectl renders them, with the image reference
set the way a user sets it (kustomize `images:`), and `kubectl auth can-i` by impersonation."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from testbed.certfleet_install import wait_for_crds
from testbed.control_plane import ControlPlane
from testbed.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
LAYOUTS = {"sidecar": DEPLOY / "sidecar", "node-agent": DEPLOY / "node-agent"}
SYSTEM = "certfleet-system"
# The image the kustomizations name (deploy/kustomization.yaml's images:).
RELEASE_IMAGE = "ghcr.io/certfleet/certfleet"


def render(plane: ControlPlane, path: Path = DEPLOY) -> list[dict[str, Any]]:
    rendered = plane.kubectl("kustomize", str(path)).stdout
    return [document for document in yaml.safe_load_all(rendered) if document]


def find(documents: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = (d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name)
    return found


def with_image(folder: Path, kustomization: Path, reference: str) -> Path:
    """An overlay of `kustomization` that sets the image to `reference` (NAME:TAG), as a user's
    overlay would; returns its folder."""
    name, _, tag = reference.rpartition(":")
    folder.mkdir(parents=True, exist_ok=True)
    overlay = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(kustomization, folder)],
        "images": [{"name": RELEASE_IMAGE, "newName": name, "newTag": tag}],
    }
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(overlay))
    return folder


def containers(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every container and init container of every workload."""
    found = []
    for document in documents:
        if document["kind"] in ("Deployment", "DaemonSet"):
            pod = document["spec"]["template"]["spec"]
            found += pod.get("initContainers", []) + pod["containers"]
    return found


def can_i(plane: ControlPlane, who: str, *request: str) -> bool:
    result = plane.kubectl("auth", "can-i", f"--as={who}", *request, check=False)
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), result.stdout + result.stderr
    return answer == "yes"


def wait_for_rights(plane: ControlPlane, checks: list[tuple[str, ...]]) -> None:
    """Until the authorizer has seen the bindings (it learns of them through an informer):
    without this wait every "cannot" of a test would hold trivially."""
    wait_for(
        "the RBAC bindings to take effect",
        lambda: all(can_i(plane, who, *request) for who, *request in checks),
        timeout=15,
        interval=0.1,
    )


def apply(plane: ControlPlane, kustomization: Path = DEPLOY) -> None:
    """Applies for real (pods never start: the test bed has no controllers or kubelet); the
    base installs the CRDs, which are waited for."""
    plane.kubectl("apply", "-k", str(kustomization))
    if kustomization == DEPLOY:
        wait_for_crds(plane)


def bare_certificate(namespace: str, name: str, domain: str) -> dict[str, Any]:
    """A ManagedCertificate for RBAC checks: no operator reconciles it."""
    return {
        "apiVersion": "certfleet.io/v1alpha1",
        "kind": "ManagedCertificate",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "domain": domain,
            "cloudhost": "sandbox",
            "buildIdentifier": "build-1",
            "generationMethod": "AUTOMATIC",
        },
    }
