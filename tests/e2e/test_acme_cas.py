"""Any ACME CA end to end: a pebble that registers accounts only with External Account
Binding (as ZeroSSL does) issues with the key id and HMAC key from a Secret and refuses
without them, with a clear condition; a first CA that fails falls back to the next one, and
the status and an event say so."""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import Callable
from typing import Any

import pytest

from e2e.fleet import Fleet, new_domain
from testbed.certfleet_install import OPERATOR_NAMESPACE, load_example
from testbed.processes import free_port

pytestmark = pytest.mark.testbed

_ACCOUNT_LINE = re.compile(rb"There are now \d+ accounts in memory")
KEY_ID = "kid-certfleet"
HMAC_KEY = base64.urlsafe_b64encode(secrets.token_bytes(48)).rstrip(b"=").decode()
FAST_RETRIES = ("--issuance-backoff-seconds=1", "--issuance-backoff-cap-seconds=4")


def _apply(fleet: Fleet, name: str, domain: str, acme: dict[str, Any]) -> None:
    resource = load_example("automatic.yaml")
    resource["metadata"].update(name=name, namespace=fleet.namespace)
    resource["spec"].update(domain=domain, cloudhost=fleet.cloudhost, acme=acme)
    fleet.install.apply(resource)


def _everything_said(fleet: Fleet, name: str) -> str:
    """The operator's log, the resource (status included) and its events, as text."""
    resource = fleet.install.managed_certificate(fleet.namespace, name)
    logs = "".join(process.log_path.read_text() for process in fleet.install.operators)
    return logs + json.dumps(resource) + json.dumps(fleet.events(name))


def test_a_ca_requiring_eab_refuses_without_it_and_issues_with_it_from_a_secret(
    start_fleet: Callable[..., Fleet],
) -> None:
    fleet = start_fleet(
        acme={"external_account_mac_keys": {KEY_ID: HMAC_KEY}}, operator_args=FAST_RETRIES
    )
    domain = new_domain()
    acme: dict[str, Any] = {"server": fleet.ca.directory_url}
    _apply(fleet, "eab", domain, acme)
    refused = fleet.install.wait_for_condition(
        fleet.namespace, "eab", "False", "ExternalAccountBindingRequired", 60
    )
    message = refused["status"]["conditions"][0]["message"]
    assert "spec.acme.externalAccountBinding" in message, message  # it names the fix
    assert fleet.stored(domain) is None

    # A key id the CA knows with an HMAC key it does not: refused by the CA, said so.
    wrong = base64.urlsafe_b64encode(secrets.token_bytes(48)).rstrip(b"=")
    fleet.install.apply_secret(fleet.namespace, "zerossl-eab", {"hmac": wrong})
    acme["externalAccountBinding"] = {
        "keyID": KEY_ID,
        "hmacKeySecretRef": {"name": "zerossl-eab", "key": "hmac"},
    }
    _apply(fleet, "eab", domain, acme)
    invalid = fleet.install.wait_for_condition(
        fleet.namespace, "eab", "False", "ExternalAccountBindingInvalid", 60
    )
    assert KEY_ID in invalid["status"]["conditions"][0]["message"]

    fleet.install.apply_secret(fleet.namespace, "zerossl-eab", {"hmac": HMAC_KEY.encode()})
    issued = fleet.install.wait_for_condition(fleet.namespace, "eab", "True", "Issued", 90)
    assert issued["status"]["issuedBy"] == {"server": fleet.ca.directory_url, "position": 0}
    assert fleet.stored(domain) is not None

    # The account is this namespace's, bound to the key id, in the operator's namespace.
    accounts = json.loads(
        fleet.install.control_plane.kubectl(
            "get",
            "secret",
            "-n",
            OPERATOR_NAMESPACE,
            "-l",
            "certfleet.io/acme-account",
            "-o",
            "json",
        ).stdout
    )["items"]
    ours = [
        item
        for item in accounts
        if item["metadata"]["annotations"].get("certfleet.io/acme-directory")
        == fleet.ca.directory_url
    ]
    assert [
        item["metadata"]["annotations"]["certfleet.io/acme-account-namespace"] for item in ours
    ] == [fleet.namespace]
    said = _everything_said(fleet, "eab")
    assert HMAC_KEY not in said and wrong.decode() not in said, "an HMAC key was shown"


def test_a_failing_first_ca_falls_back_to_the_next_and_says_so(
    start_fleet: Callable[..., Fleet],
) -> None:
    fleet = start_fleet(operator_args=(*FAST_RETRIES, "--acme-failures-before-fallback=1"))
    dead = f"https://127.0.0.1:{free_port()}/dir"  # nothing listens there
    domain = new_domain()
    _apply(fleet, "fallback", domain, {"server": dead, "fallbackServers": [fleet.ca.directory_url]})
    issued = fleet.install.wait_for_condition(fleet.namespace, "fallback", "True", "Issued", 90)
    status = issued["status"]
    assert status["issuedBy"] == {"server": fleet.ca.directory_url, "position": 1}
    assert status["failedIssuanceAttempts"] == 0
    assert fleet.stored(domain) is not None
    fell_back = [e for e in fleet.events("fallback") if e["reason"] == "AcmeServerFallback"]
    assert len(fell_back) == 1, fell_back
    assert fell_back[0]["type"] == "Warning"
    assert dead in fell_back[0]["message"] and fleet.ca.directory_url in fell_back[0]["message"]
    failed = [e for e in fleet.events("fallback") if e["reason"] == "IssuanceFailed"]
    # The first CA's failure, naming it.
    assert failed and f"issuing through ACME at {dead} failed" in failed[0]["message"], failed
    assert fleet.ca.orders_created() == 1


def test_one_account_per_namespace_however_many_certificates_start_at_once(
    start_fleet: Callable[..., Fleet],
) -> None:
    fleet = start_fleet()
    other = f"{fleet.namespace}-b"
    fleet.install.control_plane.kubectl("create", "namespace", other)
    acme = {"server": fleet.ca.directory_url, "email": "ops@certfleet.test"}
    names = [f"c{index}" for index in range(4)]
    for namespace in (fleet.namespace, other):
        for name in names:  # all at once: the first issuances race for the account
            resource = load_example("automatic.yaml")
            resource["metadata"].update(name=name, namespace=namespace)
            resource["spec"].update(domain=new_domain(), cloudhost=fleet.cloudhost, acme=acme)
            fleet.install.apply(resource)
    try:
        for namespace in (fleet.namespace, other):
            for name in names:
                fleet.install.wait_for_condition(namespace, name, "True", "Issued", 120)
        assert fleet.ca.pebble is not None
        created = _ACCOUNT_LINE.findall(fleet.ca.pebble.log_path.read_bytes())
        assert len(created) == 2, created  # one per namespace, not one per certificate
    finally:
        fleet.install.control_plane.kubectl(
            "delete", "mcert", "--all", "-n", other, "--timeout=30s", check=False
        )
