"""deploy/ and its two agent layouts on a real kube-apiserver, with the image `make image`
builds: every kustomization is accepted by a server-side dry run; the sidecar's pod passes the
"restricted" Pod Security admission, and the node agent's pod is refused by it for exactly the
rules this layout needs (said in deploy/node-agent/daemonset.yaml); each agent's RBAC lets it
read its one ManagedCertificate and patch that one's status, and nothing else.

The test bed runs no controllers, so a Deployment never makes pods: the Pod Security checks
create the workloads' pod templates as Pods (dry run), where admission enforces the level.
"""

from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from e2e.manifests import (
    DEPLOY,
    LAYOUTS,
    SYSTEM,
    apply,
    bare_certificate,
    can_i,
    containers,
    find,
    render,
    wait_for_rights,
    with_image,
)
from testbed import image
from testbed.control_plane import ControlPlane

pytestmark = pytest.mark.testbed

CERTIFICATE = "www-example"  # the one ManagedCertificate each layout's agent serves
# Who each layout's agent is, and the namespace of its certificate.
AGENTS = {
    "node-agent": (f"system:serviceaccount:{SYSTEM}:certfleet-agent", "default"),
    "sidecar": ("system:serviceaccount:web:certfleet-agent", "web"),
}
NGINX_IMAGE = "docker.io/nginxinc/nginx-unprivileged:1.27"


@pytest.fixture(scope="module")
def layouts(control_plane: ControlPlane) -> ControlPlane:
    """The base and both layouts applied for real (namespaces first: a dry run creates none)."""
    apply(control_plane)
    for layout in LAYOUTS.values():
        apply(control_plane, layout)
    return control_plane


def test_layouts_render_their_objects(control_plane: ControlPlane) -> None:
    def objects(path: Path) -> set[tuple[str, str, str]]:
        return {
            (d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"].split("-")[0])
            for d in render(control_plane, path)
        }

    assert objects(LAYOUTS["node-agent"]) == {
        ("ServiceAccount", SYSTEM, "certfleet"),
        ("Role", "default", "certfleet"),
        ("RoleBinding", "default", "certfleet"),
        ("DaemonSet", SYSTEM, "certfleet"),
    }
    assert objects(LAYOUTS["sidecar"]) == {
        ("Namespace", "", "web"),
        ("ServiceAccount", "web", "certfleet"),
        ("Role", "web", "certfleet"),
        ("RoleBinding", "web", "certfleet"),
        ("ConfigMap", "web", "certfleet"),  # the agent's settings and the HTTP-01 snippet
        ("ConfigMap", "web", "webserver"),
        ("Deployment", "web", "webserver"),
        ("Service", "web", "webserver"),
    }


@pytest.mark.parametrize("name", ["deploy", *LAYOUTS])
def test_the_apiserver_accepts_each_kustomization_with_the_built_image(
    layouts: ControlPlane, tmp_path: Path, name: str
) -> None:
    reference = image.image()
    overlay = with_image(tmp_path / "overlay", LAYOUTS.get(name, DEPLOY), reference)
    images = {container["image"] for container in containers(render(layouts, overlay))}
    assert images - {NGINX_IMAGE} == {reference}
    result = layouts.kubectl("apply", "--dry-run=server", "-k", str(overlay), check=False)
    assert result.returncode == 0, result.stderr
    assert "(server dry run)" in result.stdout


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_agents_serve_metrics_on_the_pod_address_only(
    control_plane: ControlPlane, layout: str
) -> None:
    documents = render(control_plane, LAYOUTS[layout])
    for document in documents:
        if document["kind"] in ("Deployment", "DaemonSet"):
            assert not document["spec"]["template"]["spec"].get("hostNetwork", False)
    agents = [
        c for c in containers(documents) if c.get("command", [])[:2] == ["certfleet", "agent"]
    ]
    serving = [c for c in agents if "--once" not in c["command"]]
    assert serving, "no long-running agent container"
    for container in serving:
        env = {item["name"]: item for item in container["env"]}
        assert env["CERTFLEET_METRICS_ADDRESS"]["valueFrom"] == {
            "fieldRef": {"fieldPath": "status.podIP"}
        }


def _pod(workload: dict[str, Any], namespace: str) -> dict[str, Any]:
    """The workload's pod template as a Pod, which admission checks as it would the real pods."""
    template = workload["spec"]["template"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{workload['metadata']['name']}-psa", "namespace": namespace},
        "spec": template["spec"],
    }


def _admit(plane: ControlPlane, pod: dict[str, Any], level: str) -> str:
    """Dry-run creates the pod in a fresh namespace enforcing `level`; the refusal, or ''."""
    namespace = f"psa-{level}-{secrets.token_hex(3)}"
    plane.kubectl("create", "namespace", namespace)
    plane.kubectl("label", "namespace", namespace, f"pod-security.kubernetes.io/enforce={level}")
    pod = {**pod, "metadata": {**pod["metadata"], "namespace": namespace}}
    result = plane.kubectl(
        "create", "--dry-run=server", "-f", "-", stdin=json.dumps(pod), check=False
    )
    return "" if result.returncode == 0 else result.stderr


def test_the_sidecar_pod_passes_restricted_pod_security(layouts: ControlPlane) -> None:
    documents = render(layouts, LAYOUTS["sidecar"])
    namespace = find(documents, "Namespace", "web")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    deployment = find(documents, "Deployment", "webserver")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["shareProcessNamespace"] is True
    assert not any(c["securityContext"]["capabilities"].get("add") for c in containers(documents))
    assert _admit(layouts, _pod(deployment, "web"), "restricted") == ""


def _violated_rules(refusal: str, level: str) -> set[str]:
    """The rule names of a PodSecurity refusal ('host namespaces (hostPID=true), ...')."""
    marker = f'violates PodSecurity "{level}:latest": '
    assert marker in refusal, refusal
    listed = refusal.split(marker, 1)[1].strip()
    return {part.split(" (", 1)[0] for part in listed.split("), ")}


def test_the_node_agent_pod_needs_host_pid_host_paths_and_kill_as_root(
    layouts: ControlPlane,
) -> None:
    daemonset = find(render(layouts, LAYOUTS["node-agent"]), "DaemonSet", "certfleet-agent")
    pod = _pod(daemonset, SYSTEM)
    # Baseline refuses only the host access: the node's pid namespace and the two folders.
    refused = _admit(layouts, pod, "baseline")
    assert _violated_rules(refused, "baseline") == {"host namespaces", "hostPath volumes"}
    assert "hostPID=true" in refused and '"certificate-root", "webserver-pid"' in refused
    # Restricted also refuses CAP_KILL as uid 0, which signalling the node's root nginx needs.
    refused = _admit(layouts, pod, "restricted")
    assert _violated_rules(refused, "restricted") == {
        "host namespaces",
        "unrestricted capabilities",
        "restricted volume types",
        "runAsNonRoot != true",
        "runAsUser=0",
    }
    assert 'must not include "KILL"' in refused, refused


AGENT_CAN = [
    ("get", f"managedcertificates/{CERTIFICATE}"),
    ("list", f"managedcertificates/{CERTIFICATE}"),  # with a metadata.name field selector
    ("watch", f"managedcertificates/{CERTIFICATE}"),
    ("patch", f"managedcertificates/{CERTIFICATE}", "--subresource=status"),
]
AGENT_CANNOT = [
    ("list", "managedcertificates"),
    ("get", "managedcertificates/another"),
    ("patch", "managedcertificates/another", "--subresource=status"),
    ("patch", f"managedcertificates/{CERTIFICATE}"),  # spec belongs to users
    ("update", f"managedcertificates/{CERTIFICATE}", "--subresource=status"),
    ("delete", f"managedcertificates/{CERTIFICATE}"),
    ("get", f"managedcertificates/{CERTIFICATE}", "-n", "kube-system"),
    ("list", "secrets", "--all-namespaces"),
    ("get", "secrets"),
    ("get", "secrets", "-n", SYSTEM),
    ("list", "managedcertificates", "--all-namespaces"),
    ("delete", "customresourcedefinitions.apiextensions.k8s.io"),
    ("create", "events"),
    ("create", "pods"),
]


def _agent_cases() -> list[Any]:
    return [
        pytest.param(layout, request, allowed, id=f"{layout} {verdict} {' '.join(request)}")
        for layout in AGENTS
        for requests, allowed, verdict in (
            (AGENT_CAN, True, "can"),
            (AGENT_CANNOT, False, "cannot"),
        )
        for request in requests
    ]


@pytest.fixture(scope="module")
def agent_rbac(layouts: ControlPlane) -> ControlPlane:
    wait_for_rights(
        layouts,
        [
            (who, "patch", f"managedcertificates/{CERTIFICATE}", "--subresource=status", "-n", ns)
            for who, ns in AGENTS.values()
        ],
    )
    return layouts


@pytest.mark.parametrize(("layout", "request_", "allowed"), _agent_cases())
def test_agent_rights(
    agent_rbac: ControlPlane, layout: str, request_: tuple[str, ...], allowed: bool
) -> None:
    who, namespace = AGENTS[layout]
    namespaced = (
        request_
        if "-n" in request_ or "--all-namespaces" in request_
        else (
            *request_,
            "-n",
            namespace,
        )
    )
    assert can_i(agent_rbac, who, *namespaced) is allowed


@pytest.mark.parametrize("layout", list(AGENTS))
def test_an_agent_really_reads_and_reports_its_certificate_only(
    agent_rbac: ControlPlane, layout: str, tmp_path: Path
) -> None:
    """Requests made with the agent's user name: what the agent does (a get, a watch's list by
    field selector, a status merge patch), and what it must not."""
    who, namespace = AGENTS[layout]
    account_namespace = who.split(":")[2]
    agent = agent_rbac.kubeconfig_for(
        who, ("system:serviceaccounts", f"system:serviceaccounts:{account_namespace}")
    )
    certificate = bare_certificate(namespace, CERTIFICATE, "www.example.com")
    agent_rbac.kubectl("apply", "-f", "-", stdin=json.dumps(certificate))
    try:
        ns = ("-n", namespace)
        seen = agent_rbac.kubectl("get", "mcert", CERTIFICATE, *ns, "-o", "json", kubeconfig=agent)
        assert json.loads(seen.stdout)["metadata"]["name"] == CERTIFICATE
        selected = agent_rbac.kubectl(
            "get", "mcert", *ns, f"--field-selector=metadata.name={CERTIFICATE}", kubeconfig=agent
        )
        assert CERTIFICATE in selected.stdout
        # As the agent's reporter sends it (kubectl patch would first get the status).
        report = {"status": {"fleet": {"nodes": {"node-a": {"servedSerial": "0a"}}}}}
        # The Python client splits its kubeconfig path at ':' (as KUBECONFIG): a plain name.
        kubeconfig = tmp_path / "agent.kubeconfig"
        shutil.copyfile(agent, kubeconfig)
        api = client.CustomObjectsApi(config.new_client_from_config(str(kubeconfig)))
        api.patch_namespaced_custom_object_status(
            "certfleet.io", "v1alpha1", namespace, "managedcertificates", CERTIFICATE, report
        )
        reported = agent_rbac.kubectl("get", "mcert", CERTIFICATE, *ns, "-o", "json").stdout
        assert json.loads(reported)["status"]["fleet"]["nodes"]["node-a"]["servedSerial"] == "0a"
        for refused in (
            ("get", "mcert", *ns),
            ("get", "secrets", *ns),
            ("get", "secrets", "-A"),
            ("patch", "mcert", CERTIFICATE, *ns, "--type=merge", "-p", '{"spec":{}}'),
        ):
            result = agent_rbac.kubectl(*refused, kubeconfig=agent, check=False)
            assert "forbidden" in result.stderr.lower(), (refused, result.stderr)
    finally:
        agent_rbac.kubectl("delete", "mcert", CERTIFICATE, "-n", namespace, "--wait=false")
