"""Smoke tests of the test bed: each real server does the one thing certfleet needs of it."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

import josepy
import pytest
from acme import challenges, client, crypto_util, messages
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from testbed.acme_ca import AcmeCA
from testbed.control_plane import ControlPlane
from testbed.s3 import S3Bucket
from testbed.waiting import wait_for
from testbed.webserver import Nginx

pytestmark = pytest.mark.testbed

WIDGET_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.smoke.certfleet.test
spec:
  group: smoke.certfleet.test
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer, minimum: 1}
"""


def test_crd_applied_with_kubectl_is_listed_back(control_plane: ControlPlane) -> None:
    control_plane.kubectl("apply", "-f", "-", stdin=WIDGET_CRD)
    control_plane.kubectl(
        "wait", "--for=condition=Established", "crd/widgets.smoke.certfleet.test", "--timeout=30s"
    )
    name = f"w-{secrets.token_hex(4)}"
    widget = {
        "apiVersion": "smoke.certfleet.test/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"size": 3},
    }
    control_plane.kubectl("apply", "-f", "-", stdin=json.dumps(widget))

    listed = json.loads(control_plane.kubectl("get", "widgets", "-o", "json").stdout)
    assert {item["metadata"]["name"]: item["spec"] for item in listed["items"]}[name] == {"size": 3}

    # The structural schema is enforced by the real apiserver.
    widget["spec"] = {"size": 0}
    refused = control_plane.kubectl("apply", "-f", "-", stdin=json.dumps(widget), check=False)
    assert refused.returncode != 0
    assert "spec.size" in refused.stderr


def test_restricted_user_has_only_the_rights_rbac_grants(control_plane: ControlPlane) -> None:
    user = f"viewer-{secrets.token_hex(3)}"
    kubeconfig = control_plane.kubeconfig_for(user)

    denied = control_plane.kubectl("get", "configmaps", kubeconfig=kubeconfig, check=False)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()

    control_plane.kubectl("create", "role", f"{user}-read", "--verb=list", "--resource=configmaps")
    control_plane.kubectl(
        "create", "rolebinding", f"{user}-read", f"--role={user}-read", f"--user={user}"
    )

    # RBAC changes reach the authorizer through an informer: wait for the condition, not a time.
    def listed() -> bool:
        listing = control_plane.kubectl("get", "configmaps", kubeconfig=kubeconfig, check=False)
        return listing.returncode == 0

    wait_for("the role binding to take effect", listed, timeout=15, interval=0.1)
    still_denied = control_plane.kubectl("get", "secrets", kubeconfig=kubeconfig, check=False)
    assert "forbidden" in still_denied.stderr.lower()


def test_s3_object_reads_back_byte_identical(s3_bucket: S3Bucket) -> None:
    s3 = s3_bucket.endpoint.client()
    body = secrets.token_bytes(300_000) + b"\x00\r\n-----END CERTIFICATE-----\n"
    s3.put_object(Bucket=s3_bucket.name, Key="a/b/fullchain.pem", Body=body)

    read = s3.get_object(Bucket=s3_bucket.name, Key="a/b/fullchain.pem")["Body"].read()
    assert hashlib.sha256(read).hexdigest() == hashlib.sha256(body).hexdigest()
    assert read == body


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code"))


def test_s3_honours_conditional_writes_and_reads(s3_bucket: S3Bucket) -> None:
    """The datastore's pointer relies on these: probe them on the real server."""
    s3, bucket = s3_bucket.endpoint.client(), s3_bucket.name
    first = s3.put_object(Bucket=bucket, Key="current.json", Body=b"1", IfNoneMatch="*")

    with pytest.raises(ClientError) as exists:
        s3.put_object(Bucket=bucket, Key="current.json", Body=b"2", IfNoneMatch="*")
    assert _error_code(exists.value) == "PreconditionFailed"

    second = s3.put_object(Bucket=bucket, Key="current.json", Body=b"2", IfMatch=first["ETag"])
    with pytest.raises(ClientError) as stale:
        s3.put_object(Bucket=bucket, Key="current.json", Body=b"3", IfMatch=first["ETag"])
    assert _error_code(stale.value) == "PreconditionFailed"

    with pytest.raises(ClientError) as unchanged:
        s3.get_object(Bucket=bucket, Key="current.json", IfNoneMatch=second["ETag"])
    assert _error_code(unchanged.value) == "304"
    changed = s3.get_object(Bucket=bucket, Key="current.json", IfNoneMatch=first["ETag"])
    assert changed["Body"].read() == b"2"


def _issue_with_http01(ca: AcmeCA, nginx: Nginx, domain: str) -> tuple[bytes, bytes]:
    """One ACME order through the `acme` library, HTTP-01 answered from nginx's webroot."""
    account_key = josepy.jwk.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    network = client.ClientNetwork(
        account_key,
        alg=josepy.jwa.ES256,
        verify_ssl=str(ca.listener_ca_bundle),  # type: ignore[arg-type]
        user_agent="certfleet-testbed",
    )
    acme = client.ClientV2(client.ClientV2.get_directory(ca.directory_url, network), network)
    acme.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))

    key_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    order = acme.new_order(crypto_util.make_csr(key_pem, [domain]))
    challenge_dir = nginx.challenge_webroot / ".well-known" / "acme-challenge"
    challenge_dir.mkdir(parents=True, exist_ok=True)
    for authorization in order.authorizations:
        http01 = next(
            c for c in authorization.body.challenges if isinstance(c.chall, challenges.HTTP01)
        )
        response, validation = http01.response_and_validation(account_key)
        (challenge_dir / http01.chall.encode("token")).write_text(validation)
        acme.answer_challenge(http01, response)
    finished = acme.poll_and_finalize(order, datetime.now() + timedelta(seconds=60))
    return finished.fullchain_pem.encode(), key_pem


def test_pebble_issues_through_nginx_http01_and_nginx_serves_it(
    start_acme_ca: Callable[..., AcmeCA], start_nginx: Callable[..., Nginx]
) -> None:
    ca = start_acme_ca()
    nginx = start_nginx(http_port=ca.http_port)
    domain = f"smoke-{secrets.token_hex(3)}.certfleet.test"

    fullchain, key_pem = _issue_with_http01(ca, nginx, domain)
    assert ca.orders_created() == 1
    assert "/.well-known/acme-challenge/" in (nginx.prefix / "access.log").read_text()
    leaf = x509.load_pem_x509_certificate(fullchain)
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [domain]

    (nginx.certificate_dir / "fullchain.pem").write_bytes(fullchain)
    (nginx.certificate_dir / "privkey.pem").write_bytes(key_pem)
    nginx.reload()

    roots = nginx.prefix / "pebble-roots.pem"
    roots.write_bytes(ca.issuing_roots_pem())
    served = nginx.wait_until_serving(leaf.serial_number, domain, trust=roots)
    assert served == leaf


def test_module_pebble_offers_renewal_information_and_honours_the_validity(
    start_acme_ca: Callable[..., AcmeCA], start_nginx: Callable[..., Nginx]
) -> None:
    # Debian's pebble 2.4 predates ARI; the one built from the Go module has it.
    debian = start_acme_ca()
    module = start_acme_ca(pebble="module", certificate_validity_seconds=3600)
    nginx = start_nginx(http_port=module.http_port)
    fullchain, _key = _issue_with_http01(
        module, nginx, f"ari-{secrets.token_hex(3)}.certfleet.test"
    )
    leaf = x509.load_pem_x509_certificate(fullchain)
    # The validity went into the newer pebble's profile (its top-level key is ignored).
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == timedelta(seconds=3599)

    def directory(ca: AcmeCA) -> client.ClientV2:
        key = josepy.jwk.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
        network = client.ClientNetwork(
            key,
            verify_ssl=str(ca.listener_ca_bundle),  # type: ignore[arg-type]
        )
        return client.ClientV2(client.ClientV2.get_directory(ca.directory_url, network), network)

    suggested, _ask_again = directory(module).renewal_time(fullchain)
    assert suggested is not None
    assert leaf.not_valid_before_utc <= suggested <= leaf.not_valid_after_utc
    assert "renewalInfo" not in directory(debian).directory.to_partial_json()
