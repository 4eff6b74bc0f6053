"""The kustomize base on a real kube-apiserver: it renders, applies, and its RBAC grants the
operator what it needs and nothing more. Plus the nginx snippet on a real nginx. (The agents'
layouts: tests/e2e/test_deploy_layouts.py.)

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

from certfleet.acme_issuer import ChallengeStore, Http01Server
from e2e.manifests import (
    DEPLOY,
    RELEASE_IMAGE,
    SYSTEM,
    apply,
    bare_certificate,
    can_i,
    find,
    render,
    wait_for_rights,
)
from testbed.control_plane import ControlPlane
from testbed.webserver import Nginx

pytestmark = pytest.mark.testbed

NGINX_SNIPPET = DEPLOY / "nginx" / "certfleet-acme-challenge.conf"
OPERATOR = f"system:serviceaccount:{SYSTEM}:certfleet-operator"
SERVICE_ACCOUNT_GROUPS = ("system:serviceaccounts", f"system:serviceaccounts:{SYSTEM}")


@pytest.fixture(scope="module")
def deployed(control_plane: ControlPlane) -> ControlPlane:
    apply(control_plane)
    return control_plane


@pytest.fixture(scope="module")
def namespace(deployed: ControlPlane) -> str:
    """A users' namespace, where ManagedCertificates and their Secrets live."""
    name = f"deploy-test-{secrets.token_hex(4)}"
    deployed.kubectl("create", "namespace", name)
    return name


@pytest.fixture(scope="module")
def rbac(deployed: ControlPlane, namespace: str) -> ControlPlane:
    """The deployed RBAC, once the authorizer has seen it."""
    wait_for_rights(
        deployed,
        [
            (OPERATOR, "patch", "managedcertificates", "--subresource=status", "-n", namespace),
            (OPERATOR, "create", "leases.coordination.k8s.io", "-n", SYSTEM),
        ],
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
    # Ready whether leading or standing by: /healthz, which a standby answers too.
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert container["image"] == f"{RELEASE_IMAGE}:0.1.0"
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

    # Metrics on the pod's address, not every interface.
    assert env["POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert env["CERTFLEET_METRICS_LISTEN"]["value"] == "$(POD_IP):9090"

    # The solver Service reaches the operator's pod that holds the Lease (and its label).
    service = find(documents, "Service", "certfleet-acme-solver")
    (service_port,) = service["spec"]["ports"]
    assert (service_port["port"], service_port["targetPort"]) == (80, "http-acme")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = dict(service["spec"]["selector"])
    assert selector.pop("certfleet.io/leader") == "true"
    assert selector.items() <= labels.items()


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


def test_pod_security_restricted_admits_the_operator(control_plane: ControlPlane) -> None:
    """The operator meets the "restricted" Pod Security Standard, checked by the apiserver's
    PodSecurity admission in a namespace that enforces it."""
    namespace = f"psa-{secrets.token_hex(4)}"
    control_plane.kubectl("create", "namespace", namespace)
    control_plane.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    deployment = find(render(control_plane), "Deployment", "certfleet-operator")
    deployment["metadata"]["namespace"] = namespace
    result = control_plane.kubectl(
        "apply", "--dry-run=server", "-f", "-", stdin=json.dumps(deployment)
    )
    assert "would violate PodSecurity" not in result.stderr, result.stderr


OPERATOR_CAN = [
    ("get", "managedcertificates", "--all-namespaces"),
    ("watch", "managedcertificates", "--all-namespaces"),
    ("patch", "managedcertificates", "-n", "{ns}"),  # kopf's annotations
    ("patch", "managedcertificates", "--subresource=status", "-n", "{ns}"),
    ("update", "managedcertificates", "--subresource=status", "-n", "{ns}"),
    ("list", "cloudhosts"),
    ("watch", "cloudhosts"),
    ("get", "secrets", "-n", "{ns}"),
    ("create", "secrets", "-n", "{ns}"),
    ("patch", "pods", "-n", SYSTEM),  # the leader's label on its own pod
    ("list", "pods", "-n", SYSTEM),
    ("patch", "secrets", "-n", "{ns}"),
    ("update", "secrets", "-n", SYSTEM),
    ("create", "events", "-n", "{ns}"),
    ("get", "leases.coordination.k8s.io", "-n", SYSTEM),
    ("update", "leases.coordination.k8s.io", "-n", SYSTEM),
    ("list", "namespaces"),
    ("get", "namespaces"),  # their labels admit them to CloudHosts
    ("watch", "customresourcedefinitions.apiextensions.k8s.io"),
]
OPERATOR_CANNOT = [
    ("delete", "namespaces"),
    ("create", "namespaces"),
    ("patch", "namespaces"),  # it cannot label a namespace into a CloudHost
    ("create", "clusterroles.rbac.authorization.k8s.io"),
    ("bind", "clusterroles.rbac.authorization.k8s.io"),
    ("create", "managedcertificates", "-n", "{ns}"),  # users own them
    ("delete", "managedcertificates", "-n", "{ns}"),
    ("patch", "cloudhosts"),
    ("delete", "secrets", "-n", "{ns}"),
    ("list", "secrets", "--all-namespaces"),  # Secrets by name only
    ("watch", "secrets", "-n", "{ns}"),
    ("patch", "pods", "-n", "{ns}"),
    ("delete", "pods", "-n", SYSTEM),
    ("delete", "customresourcedefinitions.apiextensions.k8s.io"),
    ("create", "pods", "-n", "{ns}"),
    ("get", "configmaps", "-n", "{ns}"),
    ("create", "leases.coordination.k8s.io", "-n", "{ns}"),  # only in its own namespace
    ("patch", "customresourcedefinitions.apiextensions.k8s.io"),
    ("impersonate", "users"),
]


def _request(template: tuple[str, ...], namespace: str) -> list[str]:
    return [part.format(ns=namespace) for part in template]


def _cases(requests: list[tuple[str, ...]], allowed: bool) -> list[Any]:
    verdict = "can" if allowed else "cannot"
    return [
        pytest.param(request, allowed, id=f"operator {verdict} {' '.join(request)}")
        for request in requests
    ]


@pytest.mark.parametrize(
    ("request_", "allowed"), _cases(OPERATOR_CAN, True) + _cases(OPERATOR_CANNOT, False)
)
def test_operator_rights(
    rbac: ControlPlane, namespace: str, request_: tuple[str, ...], allowed: bool
) -> None:
    assert can_i(rbac, OPERATOR, *_request(request_, namespace)) is allowed


def test_operator_identity_really_acts_and_is_really_refused(
    rbac: ControlPlane, namespace: str
) -> None:
    """Not just `can-i`: requests made with the operator's user name (the agents':
    tests/e2e/test_deploy_layouts.py)."""
    operator = rbac.kubeconfig_for(OPERATOR, SERVICE_ACCOUNT_GROUPS)
    name = f"rbac-{secrets.token_hex(4)}"
    certificate = bare_certificate(namespace, name, "www.example.test")
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
        listed = rbac.kubectl("get", "secrets", "-A", kubeconfig=operator, check=False)
        assert "forbidden" in listed.stderr.lower(), listed.stderr
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
        # What cannot be a token is answered by nginx and never reaches the responder.
        for odd in ("a.b", "a%2Fb", "x" * 129, ""):
            status, _body = _http_get(
                nginx.http_port, path[: -len(token)] + odd, "www.example.test"
            )
            assert status == 404, odd
        answered = [r.getMessage() for r in caplog.records if r.name == RESPONDER_LOG]
        assert len(answered) == 2, answered  # the good token and the unknown one
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
