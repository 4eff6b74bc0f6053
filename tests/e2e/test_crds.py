"""The CRDs on a real kube-apiserver: names, defaults, refusals at `kubectl apply`, columns.

The control plane is shared by the whole session, so the CRDs are applied idempotently and every
test works on objects with names of its own, in a namespace of its own.
"""

from __future__ import annotations

import copy
import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.certfleet_install import install_crds
from testbed.control_plane import ControlPlane

pytestmark = pytest.mark.testbed

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
API_VERSION = "certfleet.io/v1alpha1"

VALID_SPEC: dict[str, Any] = {
    "domain": "www.example.test",
    "cloudhost": "sandbox",
    "buildIdentifier": "build-1",
    "generationMethod": "AUTOMATIC",
}
VALID_CLOUDHOST_SPEC: dict[str, Any] = {
    "bucket": "certfleet-test",
    "credentialsSecretRef": {"namespace": "certfleet-system", "name": "s3-credentials"},
    "encryptionKeySecretRef": {"namespace": "certfleet-system", "name": "encryption-key"},
}
DELETE = object()  # a spec change that removes the field


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


@pytest.fixture(scope="module")
def crds(control_plane: ControlPlane) -> ControlPlane:
    install_crds(control_plane)
    return control_plane


@pytest.fixture(scope="module")
def namespace(crds: ControlPlane) -> Iterator[str]:
    name = unique("crd-test")
    crds.kubectl("create", "namespace", name)
    yield name
    # No namespace controller runs on the test bed, so the namespace would stay Terminating:
    # delete what the tests made in it and leave the empty namespace behind.
    crds.kubectl("delete", "managedcertificates", "--all", "-n", name, "--wait=false")


@pytest.fixture
def cloudhosts(crds: ControlPlane) -> Iterator[list[str]]:
    """Names of CloudHosts a test creates (cluster-scoped), deleted after it."""
    created: list[str] = []
    yield created
    if created:
        crds.kubectl("delete", "cloudhosts", *created, "--ignore-not-found", "--wait=false")


def certificate(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "ManagedCertificate",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def cloudhost(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "CloudHost",
        "metadata": {"name": name},
        "spec": spec,
    }


def changed(spec: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(spec)
    for key, value in changes.items():
        if value is DELETE:
            del result[key]
        else:
            result[key] = value
    return result


def apply(
    plane: ControlPlane, obj: dict[str, Any], check: bool = True
) -> subprocess.CompletedProcess[str]:
    return plane.kubectl("apply", "-f", "-", stdin=json.dumps(obj), check=check)


def get(plane: ControlPlane, *args: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(plane.kubectl("get", *args, "-o", "json").stdout)
    return result


def assert_refused(plane: ControlPlane, obj: dict[str, Any], field: str) -> str:
    """`kubectl apply` fails, names `field`, and nothing was stored."""
    result = apply(plane, obj, check=False)
    assert result.returncode != 0, f"accepted: {json.dumps(obj['spec'])}"
    assert field in result.stderr, result.stderr
    kind = obj["kind"].lower() + ".certfleet.io"
    where = ["-n", obj["metadata"]["namespace"]] if "namespace" in obj["metadata"] else []
    lookup = plane.kubectl("get", kind, obj["metadata"]["name"], *where, check=False)
    assert "NotFound" in lookup.stderr, lookup.stdout + lookup.stderr
    return result.stderr


def test_api_resources_have_the_agreed_names(crds: ControlPlane) -> None:
    listed = crds.kubectl("api-resources", "--api-group=certfleet.io", "-o", "wide").stdout
    rows = {line.split()[0]: line.split() for line in listed.splitlines()[1:]}
    # NAME SHORTNAMES APIVERSION NAMESPACED KIND VERBS CATEGORIES
    assert rows["managedcertificates"][1:5] == [
        "mcert,mcerts",
        API_VERSION,
        "true",
        "ManagedCertificate",
    ]
    assert rows["managedcertificates"][-1] == "certfleet"
    assert rows["cloudhosts"][1:5] == ["ch", API_VERSION, "false", "CloudHost"]
    assert rows["cloudhosts"][-1] == "certfleet"

    crd = get(crds, "crd", "managedcertificates.certfleet.io")
    (version,) = crd["spec"]["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    assert crd["spec"]["names"]["singular"] == "managedcertificate"


def test_examples_are_accepted_as_written(crds: ControlPlane) -> None:
    files = sorted(EXAMPLES.glob("*.yaml"))
    assert [path.name for path in files] == [
        "automatic.yaml",
        "cloudhost-sandbox.yaml",
        "dns01-cloudflare.yaml",
        "dns01-digitalocean.yaml",
        "dns01-exoscale.yaml",
        "dns01-linode.yaml",
        "dns01-powerdns.yaml",
        "dns01-rfc2136.yaml",
        "dns01-route53.yaml",
        "dns01-vultr.yaml",
        "manual.yaml",
        "zerossl-eab.yaml",
    ]
    args = [arg for path in files for arg in ("-f", str(path))]
    result = crds.kubectl("apply", "--dry-run=server", *args)
    assert "managedcertificate.certfleet.io/www-example" in result.stdout
    assert "managedcertificate.certfleet.io/shop-example" in result.stdout
    assert "managedcertificate.certfleet.io/zerossl-example" in result.stdout
    assert "cloudhost.certfleet.io/sandbox" in result.stdout


def test_defaults_are_filled_in_by_the_apiserver(
    crds: ControlPlane, namespace: str, cloudhosts: list[str]
) -> None:
    automatic = yaml.safe_load((EXAMPLES / "automatic.yaml").read_text())
    automatic["metadata"] = {"name": unique("defaults"), "namespace": namespace}
    apply(crds, automatic)
    spec = get(crds, "mcert", automatic["metadata"]["name"], "-n", namespace)["spec"]
    assert spec["renewBeforeSeconds"] == 604800
    assert spec["acme"]["keyAlgorithm"] == "ECDSA-P256"
    assert spec["acme"]["challengeType"] == "HTTP-01"
    assert spec["acme"]["server"] == automatic["spec"]["acme"]["server"]  # given, so kept

    # An acme block without a server gets Let's Encrypt.
    name = unique("default-server")
    apply(crds, certificate(name, namespace, changed(VALID_SPEC, {"acme": {}})))
    assert get(crds, "mcert", name, "-n", namespace)["spec"]["acme"]["server"] == "letsencrypt"

    host = unique("defaults")
    cloudhosts.append(host)
    apply(crds, cloudhost(host, VALID_CLOUDHOST_SPEC))
    host_spec = get(crds, "ch", host)["spec"]
    assert host_spec["prefix"] == "certfleet"
    assert host_spec["region"] == "us-east-1"
    assert host_spec["addressingStyle"] == "path"
    assert "endpoint" not in host_spec  # empty means AWS: no default invented


@pytest.mark.parametrize(
    "domain",
    [
        "www.example.test",
        "WWW.Example.Test",  # the operator lower-cases
        "xn--bcher-kva.example",
        "a.b",
        "a-b.c-d.example",
        ".".join(["a" * 63] * 3 + ["a" * 61]),  # 253 characters, 63-character labels
    ],
)
def test_valid_domains_are_accepted(crds: ControlPlane, namespace: str, domain: str) -> None:
    obj = certificate(unique("good"), namespace, changed(VALID_SPEC, {"domain": domain}))
    apply(crds, obj)
    assert get(crds, "mcert", obj["metadata"]["name"], "-n", namespace)["spec"]["domain"] == domain


def test_a_manual_wildcard_certificate_is_accepted(crds: ControlPlane, namespace: str) -> None:
    spec = changed(
        VALID_SPEC,
        {
            "domain": "*.example.test",
            "alternativeNames": ["example.test", "*.shop.example.test"],
            "generationMethod": "MANUAL",
            "manual": {"secretName": "example-test-tls"},
        },
    )
    name = unique("wildcard")
    apply(crds, certificate(name, namespace, spec))
    stored = get(crds, "mcert", name, "-n", namespace)["spec"]
    assert stored["manual"] == {"secretName": "example-test-tls"}
    assert "acme" not in stored  # a MANUAL certificate gets no ACME defaults


BAD_DOMAINS = {
    "underscore and bang": "bad_domain!",
    "leading hyphen": "-leading.example",
    "empty label": "a..b",
    "path traversal": "../etc",
    "leading dot": ".hidden.example",
    "trailing dot": "www.example.test.",
    "slash": "www.example.test/x",
    "single label": "localhost",
    "inner wildcard": "www.*.example.test",
    "254 characters": ".".join(["a" * 63] * 3 + ["a" * 62]),
    "64-character label": "a" * 64 + ".example",
}


@pytest.mark.parametrize("domain", BAD_DOMAINS.values(), ids=BAD_DOMAINS.keys())
def test_bad_domain_is_refused(crds: ControlPlane, namespace: str, domain: str) -> None:
    obj = certificate(unique("bad"), namespace, changed(VALID_SPEC, {"domain": domain}))
    assert_refused(crds, obj, "spec.domain")


BAD_SPECS: dict[str, tuple[dict[str, Any], str]] = {
    "bad alternative name": (
        {"alternativeNames": ["ok.example", "../etc"]},
        "spec.alternativeNames[1]",
    ),
    "duplicate alternative name": (
        {"alternativeNames": ["a.example", "a.example"]},
        "spec.alternativeNames[1]",
    ),
    "100 alternative names": (
        {"alternativeNames": [f"n{i}.example" for i in range(100)]},
        "spec.alternativeNames",
    ),
    "unknown method": ({"generationMethod": "SEMIAUTOMATIC"}, "spec.generationMethod"),
    "missing method": ({"generationMethod": DELETE}, "spec.generationMethod"),
    "missing domain": ({"domain": DELETE}, "spec.domain"),
    "missing cloudhost": ({"cloudhost": DELETE}, "spec.cloudhost"),
    "cloudhost not a label": ({"cloudhost": "Sandbox_1"}, "spec.cloudhost"),
    "missing build identifier": ({"buildIdentifier": DELETE}, "spec.buildIdentifier"),
    "build identifier with ..": ({"buildIdentifier": "build..1"}, "spec.buildIdentifier"),
    "build identifier with /": ({"buildIdentifier": "build/1"}, "spec.buildIdentifier"),
    "MANUAL without manual": ({"generationMethod": "MANUAL"}, "spec.manual"),
    "manual with AUTOMATIC": ({"manual": {"secretName": "x-tls"}}, "spec.manual"),
    "manual without secretName": (
        {"generationMethod": "MANUAL", "manual": {}},
        "spec.manual.secretName",
    ),
    "renewBeforeSeconds 0": ({"renewBeforeSeconds": 0}, "spec.renewBeforeSeconds"),
    "renewBeforeSeconds as text": ({"renewBeforeSeconds": "7d"}, "spec.renewBeforeSeconds"),
    "plain http ACME server": ({"acme": {"server": "http://insecure"}}, "spec.acme.server"),
    "unknown ACME server name": ({"acme": {"server": "letsencrypt-prod"}}, "spec.acme.server"),
    "unknown key algorithm": ({"acme": {"keyAlgorithm": "RSA-1024"}}, "spec.acme.keyAlgorithm"),
    "unknown challenge": ({"acme": {"challengeType": "TLS-ALPN-01"}}, "spec.acme.challengeType"),
    "bad email": ({"acme": {"email": "not-an-address"}}, "spec.acme.email"),
    "EAB without secret": (
        {"acme": {"externalAccountBinding": {"keyID": "kid"}}},
        "spec.acme.externalAccountBinding.hmacKeySecretRef",
    ),
    "EAB key id with a space": (
        {
            "acme": {
                "externalAccountBinding": {
                    "keyID": "kid 1",
                    "hmacKeySecretRef": {"name": "eab", "key": "hmac"},
                }
            }
        },
        "spec.acme.externalAccountBinding.keyID",
    ),
    "plain http fallback server": (
        {"acme": {"fallbackServers": ["http://insecure"]}},
        "spec.acme.fallbackServers[0]",
    ),
    "five fallback servers": (
        {"acme": {"fallbackServers": ["letsencrypt"] * 5}},
        "spec.acme.fallbackServers",
    ),
    "misspelt field": ({"renewBefore": 3600}, "spec.renewBefore"),
}


@pytest.mark.parametrize(("changes", "field"), BAD_SPECS.values(), ids=BAD_SPECS.keys())
def test_bad_spec_is_refused(
    crds: ControlPlane, namespace: str, changes: dict[str, Any], field: str
) -> None:
    obj = certificate(unique("bad"), namespace, changed(VALID_SPEC, changes))
    assert_refused(crds, obj, field)


@pytest.mark.parametrize(
    "changes",
    [{"domain": "*.example.test"}, {"alternativeNames": ["*.example.test"]}],
    ids=["domain", "alternative name"],
)
def test_automatic_wildcard_is_refused_with_http01_and_accepted_with_dns01(
    crds: ControlPlane, namespace: str, changes: dict[str, Any]
) -> None:
    obj = certificate(unique("bad"), namespace, changed(VALID_SPEC, changes))
    refusal = assert_refused(crds, obj, "spec")
    assert "wildcard names can only be validated with the DNS-01 challenge" in refusal
    dns01 = {
        "challengeType": "DNS-01",
        "dns01": {"provider": "rfc2136", "secretRef": {"name": "dns-credentials"}},
    }
    good = certificate(unique("wild"), namespace, changed(VALID_SPEC, {**changes, "acme": dns01}))
    apply(crds, good)


BAD_CLOUDHOSTS: dict[str, tuple[dict[str, Any], str]] = {
    "bucket with capitals": ({"bucket": "Certfleet_Test"}, "spec.bucket"),
    "bucket too short": ({"bucket": "ab"}, "spec.bucket"),
    "bucket with ..": ({"bucket": "a..b"}, "spec.bucket"),
    "missing bucket": ({"bucket": DELETE}, "spec.bucket"),
    "prefix with leading slash": ({"prefix": "/certfleet"}, "spec.prefix"),
    "prefix with trailing slash": ({"prefix": "certfleet/"}, "spec.prefix"),
    "prefix with ..": ({"prefix": "certfleet/../other"}, "spec.prefix"),
    "endpoint not a URL": ({"endpoint": "s3.example.test"}, "spec.endpoint"),
    "unknown addressing style": ({"addressingStyle": "dns"}, "spec.addressingStyle"),
    "missing credentials": ({"credentialsSecretRef": DELETE}, "spec.credentialsSecretRef"),
    "credentials without namespace": (
        {"credentialsSecretRef": {"name": "s3-credentials"}},
        "spec.credentialsSecretRef.namespace",
    ),
    "missing encryption key": ({"encryptionKeySecretRef": DELETE}, "spec.encryptionKeySecretRef"),
    "allowed namespace not a name": ({"allowedNamespaces": ["Shop_1"]}, "spec.allowedNamespaces"),
    "allowed namespaces not a list": ({"allowedNamespaces": "shop"}, "spec.allowedNamespaces"),
}


@pytest.mark.parametrize(("changes", "field"), BAD_CLOUDHOSTS.values(), ids=BAD_CLOUDHOSTS.keys())
def test_bad_cloudhost_is_refused(
    crds: ControlPlane, cloudhosts: list[str], changes: dict[str, Any], field: str
) -> None:
    name = unique("bad")
    cloudhosts.append(name)  # deleted afterwards should the apiserver accept it after all
    assert_refused(crds, cloudhost(name, changed(VALID_CLOUDHOST_SPEC, changes)), field)


def test_cloudhost_name_must_be_a_dns_label(crds: ControlPlane, cloudhosts: list[str]) -> None:
    # A valid object name (DNS subdomain) that cannot be an S3 path component or a spec.cloudhost.
    name = unique("with.dots")
    cloudhosts.append(name)
    stderr = assert_refused(crds, cloudhost(name, VALID_CLOUDHOST_SPEC), "metadata.name")
    assert "DNS-1123 label" in stderr


def test_cloudhost_accepts_provider_endpoints_and_an_empty_prefix(
    crds: ControlPlane, cloudhosts: list[str]
) -> None:
    name = unique("spaces")
    cloudhosts.append(name)
    spec = changed(
        VALID_CLOUDHOST_SPEC,
        {
            "endpoint": "https://fra1.digitaloceanspaces.com",
            "region": "fra1",
            "prefix": "",
            "addressingStyle": "virtual",
        },
    )
    apply(crds, cloudhost(name, spec))
    assert get(crds, "ch", name)["spec"]["prefix"] == ""


def status_patch(name: str, namespace: str, status: dict[str, Any]) -> list[str]:
    return [
        "patch",
        "mcert",
        name,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    ]


def test_printer_columns_show_status(crds: ControlPlane, namespace: str) -> None:
    name = unique("columns")
    apply(crds, certificate(name, namespace, VALID_SPEC))
    message = "Certificate is valid and installed"
    status = {
        "observedGeneration": 1,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Issued",
                "message": message,
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ],
        "notAfter": "2099-01-01T00:00:00Z",
        "renewalTime": "2098-12-25T00:00:00Z",
        "serialNumber": "0a1b2c",
        "issuedBy": {"server": "letsencrypt", "position": 0},
        "datastore": {
            "uri": "s3://bucket/certfleet/sandbox/build-1/www.example.test/",
            "revision": 1,
        },
        "kopf": {"progress": {}},  # kopf's own bookkeeping must survive
    }
    crds.kubectl(*status_patch(name, namespace, status))

    table = crds.kubectl("get", "mcert", name, "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "DOMAIN", "METHOD", "EXPIRES", "RENEWAL", "AGE"]
    assert table[1].split()[:4] == [name, "True", "www.example.test", "AUTOMATIC"]

    wide = crds.kubectl("get", "mcert", name, "-n", namespace, "-o", "wide").stdout.splitlines()
    assert wide[0].split()[7:] == [
        "CLOUDHOST",
        "BUILD",
        "SERIAL",
        "ISSUED-BY",
        "FLEET",
        "MESSAGE",
    ]
    assert wide[1].split()[7:11] == ["sandbox", "build-1", "0a1b2c", "letsencrypt"]
    assert wide[1].rstrip().endswith(message)

    stored = get(crds, "mcert", name, "-n", namespace)["status"]
    assert stored["kopf"] == {"progress": {}}
    assert stored["datastore"]["revision"] == 1


def test_status_is_validated_too(crds: ControlPlane, namespace: str) -> None:
    name = unique("status")
    apply(crds, certificate(name, namespace, VALID_SPEC))
    bad = {"conditions": [{"type": "Ready", "status": "Maybe"}]}
    result = crds.kubectl(*status_patch(name, namespace, bad), check=False)
    assert result.returncode != 0
    assert "status.conditions[0].status" in result.stderr
    bad_time = {"notAfter": "next tuesday"}
    result = crds.kubectl(*status_patch(name, namespace, bad_time), check=False)
    assert result.returncode != 0
    assert "status.notAfter" in result.stderr


def test_category_and_short_names_find_both_kinds(
    crds: ControlPlane, namespace: str, cloudhosts: list[str]
) -> None:
    certificate_name, host_name = unique("category"), unique("category")
    cloudhosts.append(host_name)
    apply(crds, certificate(certificate_name, namespace, VALID_SPEC))
    apply(crds, cloudhost(host_name, VALID_CLOUDHOST_SPEC))

    listed = crds.kubectl("get", "certfleet", "-A", "-o", "name").stdout.split()
    assert f"managedcertificate.certfleet.io/{certificate_name}" in listed
    assert f"cloudhost.certfleet.io/{host_name}" in listed

    for short in ("mcert", "mcerts", "managedcertificate"):
        found = crds.kubectl("get", short, certificate_name, "-n", namespace, "-o", "name")
        assert found.stdout.strip() == f"managedcertificate.certfleet.io/{certificate_name}"
    found = crds.kubectl("get", "ch", host_name, "-o", "name")
    assert found.stdout.strip() == f"cloudhost.certfleet.io/{host_name}"
