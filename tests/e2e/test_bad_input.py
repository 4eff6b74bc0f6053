"""The bad-input corpus: what a careless person or an attacker can hand certfleet, each refused
with the right reason and nothing published or installed, on the real test bed (kube-apiserver,
versitygw, pebble, the operator and the agent as processes).

One operator, one pebble and one CloudHost for the whole module; each case has its own names, so
the cases do not see each other. The CloudHost trusts pebble's root and the root of
`IntermediateCA("trusted")` (its spec.trustBundle); `IntermediateCA("stranger")` is trusted by
nobody. Every case is one test id:

- supplied (MANUAL) Secrets: refused before anything is published or cached;
- specs: refused by the CRD schema at apply (the API's answer is asserted) or by the operator;
- CloudHosts: the ManagedCertificates that use them say why, nothing is published;
- a CA answer that does not chain to the CloudHost's roots: ordered, refused, not published;
- S3 objects written behind certfleet's back: the agent refuses them, its folder stays empty.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from certfleet.api.spec import cache_secret_name, parse_certificate_spec
from certfleet.core.facts import certificate_facts
from certfleet.datastore.encryption import MasterKey
from certfleet.datastore.location import DatastoreLocation
from certfleet.datastore.s3_store import S3Datastore
from testbed.acme_ca import AcmeCA
from testbed.certfleet_install import OPERATOR_NAMESPACE, CertfleetInstall, load_example
from testbed.control_plane import ControlPlane
from testbed.pki import IntermediateCA, Leaf, pem_of, self_signed
from testbed.processes import free_port
from testbed.s3 import S3Bucket, S3Server
from testbed.webserver import Nginx

pytestmark = pytest.mark.testbed

BUILD = "build-1"
AGENT_TIMEOUT_SECONDS = 60


@dataclass
class Bed:
    plane: ControlPlane
    install: CertfleetInstall
    pebble: AcmeCA
    bucket: S3Bucket
    namespace: str
    cloudhost: str
    master_key: bytes
    trusted: IntermediateCA
    stranger: IntermediateCA
    bundle: bytes
    workdir: Path
    # What the module made outside its namespace (cluster-scoped CloudHosts, Secrets of the
    # operator's namespace), for its teardown; its namespace's objects go by namespace.
    cloudhosts: list[str] = field(default_factory=list)
    operator_secrets: list[str] = field(default_factory=list)

    def name(self, stem: str) -> tuple[str, str]:
        """A resource name and its own domain."""
        name = f"{stem}-{secrets.token_hex(3)}"[:50].strip("-")
        return name, f"{name}.certfleet.test"

    def location(self, domain: str, cloudhost: str | None = None) -> DatastoreLocation:
        return DatastoreLocation(
            self.bucket.name, "certfleet", cloudhost or self.cloudhost, BUILD, domain
        )

    @property
    def store(self) -> S3Datastore:
        return S3Datastore(self.bucket.endpoint.client(), [MasterKey(self.master_key)])

    def nothing_under(self, domain: str) -> list[str]:
        """What is published for `domain` in any location: its pointer and revisions
        (expected: none). The order lease (lease.json) and the location's claim (owner.json,
        written before anything else is done there) are no certificate."""
        listed = self.bucket.endpoint.client().list_objects_v2(Bucket=self.bucket.name)
        return [
            item["Key"]
            for item in listed.get("Contents", [])
            if f"/{domain}/" in item["Key"]
            and not item["Key"].endswith(("/lease.json", "/owner.json"))
        ]

    def secret_exists(self, name: str) -> bool:
        found = self.plane.kubectl("get", "secret", name, "-n", self.namespace, check=False)
        return found.returncode == 0

    def apply_certificate(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        example = "manual.yaml" if spec.get("generationMethod") == "MANUAL" else "automatic.yaml"
        resource = load_example(example)
        resource["metadata"].update(name=name, namespace=self.namespace)
        resource["spec"].update(spec)
        self.install.apply(resource)
        return resource

    def delete_everything(self) -> None:
        """What the module made, off the session's shared control plane: its refused
        ManagedCertificates would otherwise be retried by every later test's operator. Deleted
        while the module's operator still runs (it forgets their timers); no namespace
        controller runs on the test bed, so the namespace itself is left, empty."""
        kubectl = self.plane.kubectl
        kubectl("delete", "mcert", "--all", "-n", self.namespace, "--timeout=30s")
        kubectl("delete", "secret", "--all", "-n", self.namespace, "--timeout=30s")
        cloudhosts = [self.cloudhost, *self.cloudhosts]
        kubectl("delete", "cloudhost", *cloudhosts, "--ignore-not-found", "--timeout=30s")
        own_secrets = [
            f"{self.cloudhost}-{kind}"
            for kind in ("trust-bundle", "s3-credentials", "encryption-key")
        ]
        kubectl(
            "delete",
            "secret",
            *own_secrets,
            *self.operator_secrets,
            "-n",
            OPERATOR_NAMESPACE,
            "--ignore-not-found",
            "--timeout=30s",
        )


@pytest.fixture(scope="module")
def bed(
    control_plane: ControlPlane, s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Bed]:
    workdir = tmp_path_factory.mktemp("bad-input")
    install = CertfleetInstall(control_plane, workdir / "certfleet")
    install.install_crds()
    suffix = secrets.token_hex(3)
    cloudhost, namespace = f"bad-{suffix}", f"bad-input-{suffix}"
    bucket = S3Bucket(s3_server.endpoint, s3_server.endpoint.new_bucket())
    trusted, stranger = IntermediateCA("certfleet trusted"), IntermediateCA("stranger")
    with AcmeCA(workdir / "acme") as pebble:
        bundle = pebble.issuing_roots_pem() + trusted.root_pem
        master_key = install.create_cloudhost(
            cloudhost, bucket.endpoint, bucket.name, trust_bundle=bundle
        )
        control_plane.kubectl("create", "namespace", namespace)
        with Nginx(
            workdir / "nginx",
            workdir / "nginx" / "ssl",
            http_port=pebble.http_port,
            challenge_proxy=f"http://127.0.0.1:{install.http01_port}",
        ):
            install.start_operator(pebble)
            bed = Bed(
                control_plane,
                install,
                pebble,
                bucket,
                namespace,
                cloudhost,
                master_key,
                trusted,
                stranger,
                bundle,
                workdir,
            )
            try:
                yield bed
            finally:
                try:
                    bed.delete_everything()
                finally:
                    install.stop_operator()


# -- supplied (MANUAL) certificates ---------------------------------------------------------

Supplied = Callable[[Bed, str], tuple[bytes, bytes]]


def _pair(leaf: Leaf) -> tuple[bytes, bytes]:
    return leaf.fullchain, leaf.key_pem


def _huge(bed: Bed, domain: str) -> tuple[bytes, bytes]:
    """About 600 KiB of PEM: a leaf and its intermediate a thousand times over."""
    leaf = bed.trusted.leaf(domain)
    return leaf.fullchain + pem_of(bed.trusted.intermediate) * 1000, leaf.key_pem


def _encrypted_key(bed: Bed, domain: str) -> tuple[bytes, bytes]:
    leaf = bed.trusted.leaf(domain)
    key = leaf.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"a passphrase"),
    )
    return leaf.fullchain, key


def _forged_intermediate(bed: Bed, domain: str) -> tuple[bytes, bytes]:
    """A trusted leaf used as a CA: it signs another leaf for the domain."""
    fake_ca = bed.trusted.leaf(f"ca.{domain}")
    return _pair(bed.trusted.leaf(domain, signer=fake_ca))


def _reversed(bed: Bed, domain: str) -> tuple[bytes, bytes]:
    leaf = bed.trusted.leaf(domain)
    return pem_of(bed.trusted.intermediate, leaf.certificate), leaf.key_pem


def _leaf_only(bed: Bed, domain: str) -> tuple[bytes, bytes]:
    leaf = bed.trusted.leaf(domain)
    return pem_of(leaf.certificate), leaf.key_pem


def _untrusted(bed: Bed, domain: str) -> tuple[bytes, bytes]:
    leaf = bed.stranger.leaf(domain)
    return leaf.fullchain + bed.stranger.root_pem, leaf.key_pem


SUPPLIED: list[tuple[str, Supplied, str, str]] = [
    ("self-signed", lambda bed, d: _pair(self_signed(d)), "UntrustedChain", "does not lead"),
    ("leaf-only", _leaf_only, "UntrustedChain", "its top was issued by 'CN=certfleet trusted R1'"),
    ("reversed-chain", _reversed, "BrokenChain", "reverse order"),
    (
        "client-auth-only",
        lambda bed, d: _pair(bed.trusted.leaf(d, usages=(ExtendedKeyUsageOID.CLIENT_AUTH,))),
        "NotForServers",
        "does not include serverAuth",
    ),
    (
        "ca-true-leaf",
        lambda bed, d: _pair(bed.trusted.leaf(d, ca=True)),
        "NotForServers",
        "CA:TRUE",
    ),
    (
        "expired",
        lambda bed, d: _pair(bed.trusted.leaf(d, valid_from_days=-100, valid_for_days=90)),
        "Expired",
        "expired at",
    ),
    (
        "not-yet-valid",
        lambda bed, d: _pair(bed.trusted.leaf(d, valid_from_days=2)),
        "NotYetValid",
        "is not valid before",
    ),
    (
        "wrong-name",
        lambda bed, d: _pair(bed.trusted.leaf(f"other-{d}")),
        "NameMismatch",
        "does not cover",
    ),
    (
        "wrong-key",
        lambda bed, d: (bed.trusted.leaf(d).fullchain, bed.trusted.leaf(d).key_pem),
        "KeyMismatch",
        "does not belong",
    ),
    ("huge", _huge, "InvalidPEM", "certificates"),
    (
        "garbage-pem",
        lambda bed, d: (
            b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
            bed.trusted.leaf(d).key_pem,
        ),
        "InvalidPEM",
        "",
    ),
    ("an-untrusted-cas-chain", _untrusted, "UntrustedChain", "'CN=stranger Root'"),
    ("forged-intermediate", _forged_intermediate, "BrokenChain", "is not a CA certificate"),
    ("encrypted-key", _encrypted_key, "InvalidPEM", "encrypted"),
    (
        "no-private-key",
        lambda bed, d: (bed.trusted.leaf(d).fullchain, b""),
        "Missing",
        "no private key",
    ),
    (
        "no-certificate",
        lambda bed, d: (b"", bed.trusted.leaf(d).key_pem),
        "Missing",
        "no certificate chain",
    ),
]


@pytest.mark.parametrize(
    ("make", "reason", "fragment"),
    [pytest.param(make, reason, fragment, id=case) for case, make, reason, fragment in SUPPLIED],
)
def test_a_bad_manual_secret_is_refused_before_anything_is_published(
    bed: Bed, make: Supplied, reason: str, fragment: str
) -> None:
    name, domain = bed.name("manual")
    fullchain, key = make(bed, domain)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": f"{name}-tls", "namespace": bed.namespace},
        "stringData": {"tls.crt": fullchain.decode(), "tls.key": key.decode()},
    }
    # create, not apply: apply would copy a huge value into an annotation (256 KiB at most).
    bed.plane.kubectl("create", "-f", "-", stdin=json.dumps(secret))
    spec = {
        "domain": domain,
        "cloudhost": bed.cloudhost,
        "generationMethod": "MANUAL",
        "manual": {"secretName": f"{name}-tls"},
    }
    resource = bed.apply_certificate(name, spec)
    refused = bed.install.wait_for_condition(bed.namespace, name, "False", reason)
    message = refused["status"]["conditions"][0]["message"]
    assert fragment in message, message
    assert "PRIVATE KEY" not in message
    assert bed.nothing_under(domain) == []
    assert not bed.secret_exists(cache_secret_name(parse_certificate_spec(resource["spec"])))


# -- specs ---------------------------------------------------------------------------------

SPEC_REFUSED_BY_THE_API: list[tuple[str, dict[str, Any], str]] = [
    ("bad-domain", {"domain": "bad_domain.certfleet.test"}, "spec.domain"),
    ("domain-with-a-path", {"domain": "../etc/passwd"}, "spec.domain"),
    ("domain-too-long", {"domain": ("a" * 60 + ".") * 5 + "test"}, "spec.domain"),
    ("bad-build-identifier", {"buildIdentifier": "../build"}, "spec.buildIdentifier"),
    ("build-identifier-with-dot-dot", {"buildIdentifier": "a..b"}, "spec.buildIdentifier"),
    (
        "huge-alternative-names",
        {"alternativeNames": [f"n{i}.certfleet.test" for i in range(150)]},
        "spec.alternativeNames",
    ),
    ("renew-before-too-short", {"renewBeforeSeconds": 5}, "spec.renewBeforeSeconds"),
    ("unknown-generation-method", {"generationMethod": "MAGIC"}, "spec.generationMethod"),
    ("manual-without-a-secret", {"generationMethod": "MANUAL", "manual": None}, "manual"),
    ("acme-server-over-http", {"acme": {"server": "http://ca.example/dir"}}, "spec.acme.server"),
    ("bad-cloudhost-name", {"cloudhost": "Bad_Host"}, "spec.cloudhost"),
]


@pytest.mark.parametrize(
    ("spec", "field"),
    [pytest.param(spec, field, id=case) for case, spec, field in SPEC_REFUSED_BY_THE_API],
)
def test_a_bad_spec_is_refused_by_the_api_at_apply(
    bed: Bed, spec: dict[str, Any], field: str
) -> None:
    name, domain = bed.name("spec")
    resource = load_example("automatic.yaml")
    resource["metadata"].update(name=name, namespace=bed.namespace)
    resource["spec"].update({"domain": domain, "cloudhost": bed.cloudhost})
    resource["spec"].update(spec)
    resource["spec"] = {key: value for key, value in resource["spec"].items() if value is not None}
    if resource["spec"].get("generationMethod") == "MANUAL":
        resource["spec"].pop("acme", None)
    applied = bed.plane.kubectl("apply", "-f", "-", stdin=json.dumps(resource), check=False)
    assert applied.returncode != 0, f"the API accepted {spec}"
    # The API server's validation error, naming the field (not a connection failure).
    assert f'ManagedCertificate "{name}" is invalid' in applied.stderr, applied.stderr
    assert field in applied.stderr, applied.stderr
    got = bed.plane.kubectl("get", "mcert", name, "-n", bed.namespace, check=False)
    assert got.returncode != 0, "the resource exists"
    assert bed.nothing_under(domain) == []


def test_a_domain_the_schema_lets_through_is_refused_by_the_operator(bed: Bed) -> None:
    name, _domain = bed.name("idna")
    # Passes the schema's pattern, fails IDNA 2008: only the operator can tell.
    bed.apply_certificate(name, {"domain": "xn--zz.certfleet.test", "cloudhost": bed.cloudhost})
    refused = bed.install.wait_for_condition(bed.namespace, name, "False", "InvalidSpec")
    assert "xn--zz" in refused["status"]["conditions"][0]["message"]
    assert bed.nothing_under("xn--zz.certfleet.test") == []


# -- CloudHosts ------------------------------------------------------------------------------

CloudHostChange = Callable[[Bed, dict[str, Any]], None]


def _secret(bed: Bed, name: str, data: dict[str, bytes]) -> None:
    bed.operator_secrets.append(name)
    bed.install.apply_secret(OPERATOR_NAMESPACE, name, data)


def _missing_credentials(bed: Bed, spec: dict[str, Any]) -> None:
    spec["credentialsSecretRef"]["name"] = "no-such-credentials"


def _missing_bundle(bed: Bed, spec: dict[str, Any]) -> None:
    spec["trustBundle"]["secretRef"]["name"] = "no-such-trust-bundle"


def _garbage_bundle(bed: Bed, spec: dict[str, Any]) -> None:
    name = f"garbage-bundle-{secrets.token_hex(3)}"
    _secret(bed, name, {"ca.crt": b"-----BEGIN CERTIFICATE-----\ngarbage\n"})
    spec["trustBundle"]["secretRef"]["name"] = name


def _short_master_key(bed: Bed, spec: dict[str, Any]) -> None:
    name = f"short-key-{secrets.token_hex(3)}"
    _secret(bed, name, {"key": secrets.token_bytes(16)})
    spec["encryptionKeySecretRef"]["name"] = name


def _unreachable(bed: Bed, spec: dict[str, Any]) -> None:
    spec["endpoint"] = f"http://127.0.0.1:{free_port()}"  # nothing listens there


def _bundle_without_the_cas_root(bed: Bed, spec: dict[str, Any]) -> None:
    name = f"other-bundle-{secrets.token_hex(3)}"
    _secret(bed, name, {"ca.crt": bed.stranger.root_pem})
    spec["trustBundle"]["secretRef"]["name"] = name


CLOUDHOSTS: list[tuple[str, CloudHostChange, str, str]] = [
    ("missing-credentials-secret", _missing_credentials, "DatastoreNotConfigured", "no-such"),
    ("missing-trust-bundle-secret", _missing_bundle, "TrustBundleNotConfigured", "does not exist"),
    ("garbage-trust-bundle", _garbage_bundle, "TrustBundleNotConfigured", "not a list of PEM"),
    ("short-master-key", _short_master_key, "DatastoreNotConfigured", "32 random bytes"),
    ("unreachable-endpoint", _unreachable, "DatastoreUnavailable", ""),
    (
        "bundle-without-the-manual-cas-root",
        _bundle_without_the_cas_root,
        "UntrustedChain",
        "does not lead",
    ),
]


def _cloudhost(bed: Bed, change: CloudHostChange) -> str:
    """A CloudHost like the module's (its Secrets, its bucket), changed by `change`."""
    name = f"bad-host-{secrets.token_hex(3)}"
    document = json.loads(bed.plane.kubectl("get", "cloudhost", bed.cloudhost, "-o", "json").stdout)
    cloudhost = {
        "apiVersion": document["apiVersion"],
        "kind": "CloudHost",
        "metadata": {"name": name},
        "spec": document["spec"],
    }
    change(bed, cloudhost["spec"])
    bed.cloudhosts.append(name)
    bed.install.apply(cloudhost)
    return name


@pytest.mark.parametrize(
    ("change", "reason", "fragment"),
    [pytest.param(change, reason, text, id=case) for case, change, reason, text in CLOUDHOSTS],
)
def test_a_bad_cloudhost_is_reported_and_nothing_is_published(
    bed: Bed, change: CloudHostChange, reason: str, fragment: str
) -> None:
    cloudhost = _cloudhost(bed, change)
    name, domain = bed.name("host")
    leaf = bed.trusted.leaf(domain)  # a good certificate: only the CloudHost is wrong
    bed.install.apply_secret(
        bed.namespace,
        f"{name}-tls",
        {"tls.crt": leaf.fullchain, "tls.key": leaf.key_pem},
        type_="kubernetes.io/tls",
    )
    spec = {
        "domain": domain,
        "cloudhost": cloudhost,
        "generationMethod": "MANUAL",
        "manual": {"secretName": f"{name}-tls"},
    }
    bed.apply_certificate(name, spec)
    refused = bed.install.wait_for_condition(bed.namespace, name, "False", reason, timeout=60)
    assert fragment in refused["status"]["conditions"][0]["message"]
    assert bed.nothing_under(domain) == []


def test_a_missing_cloudhost_is_reported(bed: Bed) -> None:
    name, domain = bed.name("nohost")
    bed.apply_certificate(name, {"domain": domain, "cloudhost": "no-such-cloudhost"})
    refused = bed.install.wait_for_condition(bed.namespace, name, "False", "DatastoreNotConfigured")
    assert "no-such-cloudhost" in refused["status"]["conditions"][0]["message"]
    assert bed.nothing_under(domain) == []


def test_a_ca_answer_that_does_not_chain_to_the_cloudhosts_roots_is_not_published(
    bed: Bed,
) -> None:
    """pebble issues, but the CloudHost trusts only another CA: the certificate is refused
    after the order, never published (the status and an event say why)."""
    cloudhost = _cloudhost(bed, _bundle_without_the_cas_root)
    name, domain = bed.name("answer")
    spec = {"domain": domain, "cloudhost": cloudhost, "acme": {"server": bed.pebble.directory_url}}
    bed.apply_certificate(name, spec)
    try:
        refused = bed.install.wait_for_condition(
            bed.namespace, name, "False", "UntrustedChain", timeout=90
        )
        message = refused["status"]["conditions"][0]["message"]
        assert "the CA issued a certificate that fails the policy" in message, message
        assert bed.nothing_under(domain) == []
    finally:  # no more orders for it
        bed.plane.kubectl("delete", "mcert", name, "-n", bed.namespace, "--wait=false")


# -- S3 objects, written behind certfleet's back -------------------------------------------

Written = Callable[[Bed, DatastoreLocation], None]


def _publish(bed: Bed, location: DatastoreLocation, fullchain: bytes, key: bytes) -> int:
    """As anyone with the bucket's credentials and the master key can: a well-formed
    revision and a pointer that matches it (the datastore does not judge certificates)."""
    facts = certificate_facts(x509.load_pem_x509_certificates(fullchain)[0])
    pointer = bed.store.publish(
        location, fullchain, key, facts.serial, facts.not_before, facts.not_after, None
    )
    return pointer.revision


def _publish_leaf(leaf_of: Callable[[Bed, str], tuple[bytes, bytes]]) -> Written:
    def written(bed: Bed, location: DatastoreLocation) -> None:
        _publish(bed, location, *leaf_of(bed, location.domain))

    return written


def _truncated(bed: Bed, location: DatastoreLocation) -> None:
    leaf = bed.trusted.leaf(location.domain)
    revision = _publish(bed, location, leaf.fullchain, leaf.key_pem)
    bed.bucket.endpoint.client().put_object(
        Bucket=bed.bucket.name,
        Key=location.fullchain_key(revision),
        Body=leaf.fullchain[: len(leaf.fullchain) // 2],
    )


def _other_bytes(bed: Bed, location: DatastoreLocation) -> None:
    """The revision's fullchain replaced by another good certificate of the same name."""
    leaf = bed.trusted.leaf(location.domain)
    revision = _publish(bed, location, leaf.fullchain, leaf.key_pem)
    bed.bucket.endpoint.client().put_object(
        Bucket=bed.bucket.name,
        Key=location.fullchain_key(revision),
        Body=bed.trusted.leaf(location.domain).fullchain,
    )


S3_OBJECTS: list[tuple[str, Written, str]] = [
    ("truncated-revision", _truncated, "DatastoreIntegrity"),
    ("digest-does-not-match-the-pointer", _other_bytes, "DatastoreIntegrity"),
    ("untrusted-cas-chain-with-a-matching-pointer", _publish_leaf(_untrusted), "UntrustedChain"),
    (
        "self-signed-with-a-matching-pointer",
        _publish_leaf(lambda bed, d: _pair(self_signed(d))),
        "UntrustedChain",
    ),
    ("leaf-only-with-a-matching-pointer", _publish_leaf(_leaf_only), "UntrustedChain"),
    (
        "client-auth-only-with-a-matching-pointer",
        _publish_leaf(
            lambda bed, d: _pair(bed.trusted.leaf(d, usages=(ExtendedKeyUsageOID.CLIENT_AUTH,)))
        ),
        "NotForServers",
    ),
    (
        "expired-with-a-matching-pointer",
        _publish_leaf(
            lambda bed, d: _pair(bed.trusted.leaf(d, valid_from_days=-100, valid_for_days=90))
        ),
        "Expired",
    ),
]


def _agent_once(
    bed: Bed, location: DatastoreLocation, root: Path
) -> subprocess.CompletedProcess[str]:
    """`certfleet agent --once --no-reload` (a node's init step) for `location`, trusting
    what the CloudHost trusts."""
    files = bed.workdir / "agent-files"
    files.mkdir(exist_ok=True)
    endpoint = bed.bucket.endpoint
    for name, value in (
        ("master.key", bed.master_key),
        ("id", endpoint.access_key.encode()),
        ("secret", endpoint.secret_key.encode()),
        ("roots.pem", bed.bundle),
    ):
        (files / name).write_bytes(value)
        (files / name).chmod(0o600)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "certfleet.cli",
            "agent",
            f"--s3-endpoint={endpoint.url}",
            f"--s3-region={endpoint.region}",
            f"--s3-bucket={location.bucket}",
            f"--s3-prefix={location.prefix}",
            f"--access-key-id-file={files / 'id'}",
            f"--secret-access-key-file={files / 'secret'}",
            f"--master-key-file={files / 'master.key'}",
            f"--cloudhost={location.cloudhost}",
            f"--build-identifier={location.build_identifier}",
            f"--domain={location.domain}",
            f"--cert-root={root}",
            f"--trust-bundle={files / 'roots.pem'}",
            "--node-name=bad-input",
            "--metrics-port=0",
            "--once",
            "--no-reload",
        ],
        capture_output=True,
        text=True,
        timeout=AGENT_TIMEOUT_SECONDS,
        check=False,
    )


@pytest.mark.parametrize(
    ("write", "reason"),
    [pytest.param(write, reason, id=case) for case, write, reason in S3_OBJECTS],
)
def test_a_bad_s3_object_is_refused_by_the_agent_and_nothing_is_installed(
    bed: Bed, write: Written, reason: str, tmp_path: Path
) -> None:
    _name, domain = bed.name("s3")
    location = bed.location(domain)
    write(bed, location)
    root = tmp_path / "live"
    ran = _agent_once(bed, location, root)
    assert ran.returncode == 1, ran.stderr
    assert f"{reason}: " in ran.stderr, ran.stderr
    assert "PRIVATE KEY" not in ran.stderr
    # Its own lock file aside (.certfleet/<domain>/.lock), no file and no link was made.
    installed = sorted(root.rglob("*.pem")) if root.exists() else []
    assert installed == [], f"the agent installed {installed}"
    assert not (root / domain).exists() and not (root / domain).is_symlink()
