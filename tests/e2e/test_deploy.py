"""The kustomize base on a real kube-apiserver: it renders, applies, and its RBAC grants the
operator and the agent what they need and nothing more. Plus the nginx snippet on a real nginx.

The base is applied for real (pods never start: the test bed has no scheduler or kubelet) and
left in place: the control plane is shared by the session and, with no namespace controller, a
deleted certfleet-system namespace would stay Terminating for the rest of it.
"""

from __future__ import annotations

import http.client
import json
import logging
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from certfleet.acme_issuer import ChallengeStore, Http01Server
from testbed.certfleet_install import wait_for_crds
from testbed.control_plane import ControlPlane
from testbed.waiting import wait_for
from testbed.webserver import Nginx

pytestmark = pytest.mark.testbed

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
NGINX_SNIPPET = DEPLOY / "nginx" / "certfleet-acme-challenge.conf"
SYSTEM = "certfleet-system"
OPERATOR = f"system:serviceaccount:{SYSTEM}:certfleet-operator"
AGENT = f"system:serviceaccount:{SYSTEM}:certfleet-agent"
SERVICE_ACCOUNT_GROUPS = ("system:serviceaccounts", f"system:serviceaccounts:{SYSTEM}")


def render(plane: ControlPlane) -> list[dict[str, Any]]:
    rendered = plane.kubectl("kustomize", str(DEPLOY)).stdout
    return [document for document in yaml.safe_load_all(rendered) if document]


def find(documents: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = (d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name)
    return found


@pytest.fixture(scope="module")
def deployed(control_plane: ControlPlane) -> ControlPlane:
    control_plane.kubectl("apply", "-k", str(DEPLOY))
    wait_for_crds(control_plane)
    return control_plane


@pytest.fixture(scope="module")
def namespace(deployed: ControlPlane) -> str:
    """A users' namespace, where ManagedCertificates and their Secrets live."""
    name = f"deploy-test-{secrets.token_hex(4)}"
    deployed.kubectl("create", "namespace", name)
    return name


def can_i(plane: ControlPlane, who: str, *request: str) -> bool:
    result = plane.kubectl("auth", "can-i", f"--as={who}", *request, check=False)
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), result.stdout + result.stderr
    return answer == "yes"


@pytest.fixture(scope="module")
def rbac(deployed: ControlPlane, namespace: str) -> ControlPlane:
    """The deployed RBAC, once the authorizer has seen it (it learns of bindings through an
    informer): without this wait every "cannot" below would hold trivially."""
    checks = (
        (OPERATOR, "patch", "managedcertificates", "--subresource=status", "-n", namespace),
        (AGENT, "get", "managedcertificates", "-n", namespace),
        (OPERATOR, "create", "leases.coordination.k8s.io", "-n", SYSTEM),
    )
    wait_for(
        "the RBAC bindings to take effect",
        lambda: all(can_i(deployed, who, *request) for who, *request in checks),
        timeout=15,
        interval=0.1,
    )
    return deployed


def test_base_renders_exactly_the_expected_objects(control_plane: ControlPlane) -> None:
    documents = render(control_plane)
    objects = {
        (d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]) for d in documents
    }
    assert objects == {
        ("Namespace", "", SYSTEM),
        ("CustomResourceDefinition", "", "managedcertificates.certfleet.io"),
        ("CustomResourceDefinition", "", "cloudhosts.certfleet.io"),
        ("ServiceAccount", SYSTEM, "certfleet-operator"),
        ("ClusterRole", "", "certfleet-operator"),
        ("ClusterRoleBinding", "", "certfleet-operator"),
        ("Role", SYSTEM, "certfleet-operator-leader-election"),
        ("RoleBinding", SYSTEM, "certfleet-operator-leader-election"),
        ("Deployment", SYSTEM, "certfleet-operator"),
        ("Service", SYSTEM, "certfleet-acme-solver"),
        ("ServiceAccount", SYSTEM, "certfleet-agent"),
        ("ClusterRole", "", "certfleet-agent"),
        ("ClusterRoleBinding", "", "certfleet-agent"),
        ("DaemonSet", SYSTEM, "certfleet-agent"),
    }
    assert len(documents) == len(objects)  # no object twice
    assert all(
        d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "certfleet" for d in documents
    )


def test_operator_deployment_is_locked_down(control_plane: ControlPlane) -> None:
    documents = render(control_plane)
    deployment = find(documents, "Deployment", "certfleet-operator")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    # Leader election makes a second replica a warm standby, not a second actor.
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"].get("strategy", {}).get("type", "RollingUpdate") == "RollingUpdate"
    assert container["readinessProbe"]["tcpSocket"]["port"] == "http-acme"
    assert pod["serviceAccountName"] == "certfleet-operator"
    assert container["command"] == ["certfleet", "operator"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert set(container["resources"]) == {"requests", "limits"}
    env = {variable["name"]: variable for variable in container["env"]}
    assert env["CERTFLEET_NAMESPACE"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.namespace"}
    }
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports["http-acme"] == 8089
    assert ports["metrics"] == 9090

    # The solver Service reaches the operator's pods on the challenge port.
    service = find(documents, "Service", "certfleet-acme-solver")
    (service_port,) = service["spec"]["ports"]
    assert (service_port["port"], service_port["targetPort"]) == (80, "http-acme")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


def test_agent_daemonset_runs_on_webserver_nodes_only(control_plane: ControlPlane) -> None:
    daemonset = find(render(control_plane), "DaemonSet", "certfleet-agent")
    pod = daemonset["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["nodeSelector"] == {"certfleet.io/webserver": "true"}
    assert pod["serviceAccountName"] == "certfleet-agent"
    assert container["command"] == ["certfleet", "agent"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["name"]: mount for mount in container["volumeMounts"]}
    assert volumes.keys() == mounts.keys()
    root = volumes["certificate-root"]["hostPath"]["path"]
    assert root == mounts["certificate-root"]["mountPath"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    # The agent writes ${HOME}/ssl/live/<domain>/ on the node, beside the webserver.
    assert env["CERTFLEET_CERT_ROOT"] == f"{root}/live"
    # Keys and credentials come as read-only files from the CloudHost's Secrets.
    for name in ("s3-credentials", "master-key"):
        assert mounts[name]["readOnly"] is True
        assert volumes[name]["secret"]["defaultMode"] == 0o400
    # The webserver is the node's: reloaded in its namespaces, probed on its network.
    assert pod["hostNetwork"] is True and pod["hostPID"] is True
    assert "nsenter" in env["CERTFLEET_RELOAD_COMMAND"]


def test_base_applies_and_reapplies_without_change(deployed: ControlPlane) -> None:
    # The module fixture applied it for real; the apiserver now holds exactly the base.
    dry_run = deployed.kubectl("apply", "--dry-run=server", "-k", str(DEPLOY))
    assert "deployment.apps/certfleet-operator unchanged (server dry run)" in dry_run.stdout
    diff = deployed.kubectl("diff", "-k", str(DEPLOY), check=False)
    assert diff.returncode == 0, diff.stdout + diff.stderr
    operator = json.loads(
        deployed.kubectl(
            "get", "deployment", "certfleet-operator", "-n", SYSTEM, "-o", "json"
        ).stdout
    )
    assert operator["spec"]["template"]["spec"]["serviceAccountName"] == "certfleet-operator"


def test_pod_security_restricted_admits_the_operator_not_the_agent(
    control_plane: ControlPlane,
) -> None:
    """The operator meets the "restricted" Pod Security Standard; the agent, which writes to
    its node through a hostPath, cannot. Checked by the apiserver's PodSecurity admission."""
    namespace = f"psa-{secrets.token_hex(4)}"
    control_plane.kubectl("create", "namespace", namespace)
    control_plane.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/warn=restricted"
    )
    documents = render(control_plane)
    warnings = {}
    for kind, name in (("Deployment", "certfleet-operator"), ("DaemonSet", "certfleet-agent")):
        workload = find(documents, kind, name)
        workload["metadata"]["namespace"] = namespace
        result = control_plane.kubectl(
            "apply", "--dry-run=server", "-f", "-", stdin=json.dumps(workload)
        )
        warnings[kind] = result.stderr
    assert "would violate PodSecurity" not in warnings["Deployment"], warnings["Deployment"]
    assert 'would violate PodSecurity "restricted' in warnings["DaemonSet"]
    assert "hostPath" in warnings["DaemonSet"]


OPERATOR_CAN = [
    ("get", "managedcertificates", "--all-namespaces"),
    ("watch", "managedcertificates", "--all-namespaces"),
    ("patch", "managedcertificates", "-n", "{ns}"),  # kopf's finalizer and annotations
    ("patch", "managedcertificates", "--subresource=status", "-n", "{ns}"),
    ("update", "managedcertificates", "--subresource=status", "-n", "{ns}"),
    ("list", "cloudhosts"),
    ("watch", "cloudhosts"),
    ("get", "secrets", "-n", "{ns}"),
    ("create", "secrets", "-n", "{ns}"),
    ("patch", "secrets", "-n", "{ns}"),
    ("update", "secrets", "-n", SYSTEM),
    ("create", "events", "-n", "{ns}"),
    ("get", "leases.coordination.k8s.io", "-n", SYSTEM),
    ("update", "leases.coordination.k8s.io", "-n", SYSTEM),
    ("list", "namespaces"),
    ("watch", "customresourcedefinitions.apiextensions.k8s.io"),
]
OPERATOR_CANNOT = [
    ("delete", "namespaces"),
    ("create", "namespaces"),
    ("create", "clusterroles.rbac.authorization.k8s.io"),
    ("bind", "clusterroles.rbac.authorization.k8s.io"),
    ("create", "managedcertificates", "-n", "{ns}"),  # users own them
    ("delete", "managedcertificates", "-n", "{ns}"),
    ("patch", "cloudhosts"),
    ("delete", "secrets", "-n", "{ns}"),
    ("create", "pods", "-n", "{ns}"),
    ("get", "configmaps", "-n", "{ns}"),
    ("create", "leases.coordination.k8s.io", "-n", "{ns}"),  # only in its own namespace
    ("patch", "customresourcedefinitions.apiextensions.k8s.io"),
    ("impersonate", "users"),
]
AGENT_CAN = [
    ("get", "managedcertificates", "-n", "{ns}"),
    ("list", "managedcertificates", "--all-namespaces"),
    ("watch", "managedcertificates", "--all-namespaces"),
    ("patch", "managedcertificates", "--subresource=status", "-n", "{ns}"),
]
AGENT_CANNOT = [
    ("get", "secrets", "-n", "{ns}"),
    ("list", "secrets", "--all-namespaces"),
    ("get", "secrets", "-n", SYSTEM),
    ("patch", "managedcertificates", "-n", "{ns}"),  # spec belongs to users
    ("delete", "managedcertificates", "-n", "{ns}"),
    ("update", "managedcertificates", "--subresource=status", "-n", "{ns}"),
    ("create", "events", "-n", "{ns}"),
]


def _request(template: tuple[str, ...], namespace: str) -> list[str]:
    return [part.format(ns=namespace) for part in template]


def _cases(who: str, requests: list[tuple[str, ...]], allowed: bool) -> list[Any]:
    role = "operator" if who == OPERATOR else "agent"
    verdict = "can" if allowed else "cannot"
    return [
        pytest.param(who, request, allowed, id=f"{role} {verdict} {' '.join(request)}")
        for request in requests
    ]


@pytest.mark.parametrize(
    ("who", "request_", "allowed"),
    _cases(OPERATOR, OPERATOR_CAN, True)
    + _cases(OPERATOR, OPERATOR_CANNOT, False)
    + _cases(AGENT, AGENT_CAN, True)
    + _cases(AGENT, AGENT_CANNOT, False),
)
def test_service_account_rights(
    rbac: ControlPlane, namespace: str, who: str, request_: tuple[str, ...], allowed: bool
) -> None:
    assert can_i(rbac, who, *_request(request_, namespace)) is allowed


def test_operator_identity_really_acts_and_is_really_refused(
    rbac: ControlPlane, namespace: str
) -> None:
    """Not just `can-i`: requests made with the operator's and the agent's user names."""
    operator = rbac.kubeconfig_for(OPERATOR, SERVICE_ACCOUNT_GROUPS)
    agent = rbac.kubeconfig_for(AGENT, SERVICE_ACCOUNT_GROUPS)
    name = f"rbac-{secrets.token_hex(4)}"
    certificate = {
        "apiVersion": "certfleet.io/v1alpha1",
        "kind": "ManagedCertificate",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "domain": "www.example.test",
            "cloudhost": "sandbox",
            "buildIdentifier": "build-1",
            "generationMethod": "AUTOMATIC",
        },
    }
    rbac.kubectl("apply", "-f", "-", stdin=json.dumps(certificate))
    try:
        status = json.dumps({"status": {"serialNumber": "0a"}})
        rbac.kubectl(
            *("patch", "mcert", name, "-n", namespace, "--subresource=status", "--type=merge"),
            *("-p", status),
            kubeconfig=operator,
        )
        secret = rbac.kubectl(
            *("create", "secret", "generic", f"{name}-cache", "-n", namespace),
            "--from-literal=k=v",
            kubeconfig=operator,
        )
        assert "created" in secret.stdout
        refused = rbac.kubectl("delete", "namespace", namespace, kubeconfig=operator, check=False)
        assert "forbidden" in refused.stderr.lower(), refused.stderr

        seen = rbac.kubectl("get", "mcert", name, "-n", namespace, "-o", "json", kubeconfig=agent)
        assert json.loads(seen.stdout)["status"]["serialNumber"] == "0a"
        hidden = rbac.kubectl(
            "get", "secret", f"{name}-cache", "-n", namespace, kubeconfig=agent, check=False
        )
        assert "forbidden" in hidden.stderr.lower(), hidden.stderr
    finally:
        rbac.kubectl("delete", "mcert", name, "-n", namespace, "--wait=false")
        rbac.kubectl("delete", "secret", f"{name}-cache", "-n", namespace, "--ignore-not-found")


RESPONDER_LOG = "certfleet.acme_issuer.http01"
# What many sites have, around the snippet: dotfiles denied, everything else redirected to https.
SITE = """\
server_name www.example.test;
        include {snippet};
        location ~ /\\. {{ deny all; }}
        location / {{ return 301 https://$host$request_uri; }}"""


def test_nginx_snippet_proxies_challenges_to_the_solver(
    tmp_path: Path, start_nginx: Callable[..., Nginx], caplog: pytest.LogCaptureFixture
) -> None:
    text = NGINX_SNIPPET.read_text()
    in_cluster = "proxy_pass http://certfleet-acme-solver.certfleet-system.svc;"
    assert text.count(in_cluster) == 1
    token = "dGhpcy1pcy1hLXRva2VuLW9mLXRlc3Rz"
    path = f"/.well-known/acme-challenge/{token}"
    store = ChallengeStore()
    store.put(token, f"{token}.key-thumbprint")
    caplog.set_level(logging.DEBUG, logger=RESPONDER_LOG)
    with Http01Server(store, "127.0.0.1", 0) as solver:
        # Cluster DNS does not exist here: point the same line at the operator's responder.
        snippet = tmp_path / "certfleet-acme-challenge.conf"
        snippet.write_text(text.replace(in_cluster, f"proxy_pass http://127.0.0.1:{solver.port};"))
        nginx = start_nginx(http_site=SITE.format(snippet=snippet))
        caplog.clear()  # from here on, the responder logs one line per request it answers

        answer = _http_get(nginx.http_port, path, "www.example.test")
        assert answer == (200, f"{token}.key-thumbprint")
        answered = [r.getMessage() for r in caplog.records if r.name == RESPONDER_LOG]
        assert answered == [f"http-01 GET {token[:8]}...: 200"]
        # A token the responder does not hold: its 404, not the site's rules.
        unknown = _http_get(nginx.http_port, path[:-4] + "AAAA", "www.example.test")
        assert unknown == (404, "not found\n")
        # Everything else still follows the site's own rules.
        assert _http_get(nginx.http_port, "/index.html", "www.example.test")[0] == 301
        assert _http_get(nginx.http_port, "/.git/config", "www.example.test")[0] == 403


def _http_get(port: int, path: str, host: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path, headers={"Host": host})
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()
