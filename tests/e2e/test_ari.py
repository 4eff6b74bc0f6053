"""ACME Renewal Information (RFC 9773) end to end, with the current pebble built from its Go
module (Debian's 2.4 has no ARI): the issuer reads pebble's window and names the certificate a
renewal replaces (and orders anyway when pebble refuses that); the CA's window sets the
status's renewal time; a revoked certificate is renewed by the operator by itself; and an
unusable ARI answer leaves the operator's own rule in charge."""

from __future__ import annotations

import json
import re
import ssl
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from acme import client
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from josepy import jwa, jwk

from certfleet.acme_issuer import AcmeIssuer, ChallengeStore, Http01Server, InMemoryAccountStore
from certfleet.acme_issuer.ari import certificate_identifier
from certfleet.core.renewal import renewal_time
from e2e.fleet import Fleet, new_domain
from testbed.acme_ca import AcmeCA
from testbed.metrics import metric_value
from testbed.waiting import wait_for
from testbed.webserver import Nginx

pytestmark = pytest.mark.testbed

# Short rechecks, so what a CA changes is seen within seconds instead of hours.
FAST_ARI = [
    "--recheck-seconds=1",
    "--ari-retry-after-min-seconds=0.5",
    "--ari-retry-after-max-seconds=1",
]
_REPLACEMENT = re.compile(rb"ARI: order \"[^\"]+\" is a replacement of")


def renewal_info_requests(fleet: Fleet) -> float:
    """How many renewalInfo requests the operator has had answered (its ACME request metric)."""
    assert fleet.install.metrics_port is not None
    count = metric_value(
        fleet.install.metrics_port,
        "certfleet_acme_client_request_duration_seconds_count",
        {"operation": "renewal-info"},
    )
    return count or 0.0


def status(fleet: Fleet) -> dict[str, Any]:
    return dict(fleet.install.managed_certificate(fleet.namespace, "web").get("status") or {})


def renewal_time_in_status(fleet: Fleet) -> datetime:
    return datetime.fromisoformat(status(fleet)["renewalTime"].replace("Z", "+00:00"))


def leaf_of(fleet: Fleet, domain: str) -> x509.Certificate:
    stored = fleet.stored(domain)
    assert stored is not None
    return x509.load_pem_x509_certificate(stored.fullchain)


def pebbles_window(fleet: Fleet, leaf: x509.Certificate) -> tuple[datetime, datetime]:
    """What pebble's renewalInfo says for this certificate, read without certfleet's client."""
    context = ssl.create_default_context(cafile=str(fleet.ca.listener_ca_bundle))
    with urllib.request.urlopen(fleet.ca.directory_url, context=context, timeout=5) as answer:
        base = json.load(answer)["renewalInfo"]
    url = f"{base}/{certificate_identifier(leaf)}"
    with urllib.request.urlopen(url, context=context, timeout=5) as answer:
        window = json.load(answer)["suggestedWindow"]
    return (
        datetime.fromisoformat(window["start"].replace("Z", "+00:00")),
        datetime.fromisoformat(window["end"].replace("Z", "+00:00")),
    )


def own_rule(leaf: x509.Certificate) -> datetime:
    """The renewal time without ARI: 7 days before expiry (the default renewBeforeSeconds), or
    2/3 of the lifetime for a certificate that lives 7 days or less."""
    return renewal_time(leaf.not_valid_before_utc, leaf.not_valid_after_utc).at


def close_to(moment: datetime, expected: datetime) -> bool:
    # The status names whole seconds.
    return abs((moment - expected).total_seconds()) <= 1.0


def replacements(ca: AcmeCA) -> int:
    assert ca.pebble is not None
    return len(_REPLACEMENT.findall(ca.pebble.log_path.read_bytes()))


def test_the_issuer_reads_the_window_and_names_what_a_renewal_replaces(
    start_acme_ca: Callable[..., AcmeCA],
    start_nginx: Callable[..., Nginx],
    caplog: pytest.LogCaptureFixture,
) -> None:
    ca = start_acme_ca(pebble="module", certificate_validity_seconds=3600)
    with Http01Server(ChallengeStore(), "127.0.0.1", 0) as responder:
        start_nginx(http_port=ca.http_port, challenge_proxy=f"http://127.0.0.1:{responder.port}")
        issuer = AcmeIssuer(
            ca.directory_url,
            InMemoryAccountStore(),
            responder.store,
            ca_bundle=str(ca.listener_ca_bundle),
        )
        name = new_domain()
        first = issuer.issue([name], deadline=30).fullchain_pem
        leaf = x509.load_pem_x509_certificate(first)
        info = issuer.renewal_info(first)
        assert info is not None
        assert info.window == (leaf.not_valid_before_utc, leaf.not_valid_after_utc)
        assert info.ask_again_seconds == 6 * 3600  # pebble's Retry-After, within the bounds

        issuer.issue([name], deadline=30, replacing=first)
        assert replacements(ca) == 1
        # pebble refuses a second replacement of the same certificate (alreadyReplaced): the
        # renewal is ordered all the same, without `replaces`.
        issuer.issue([name], deadline=30, replacing=first)
        assert replacements(ca) == 1
        assert "(HTTP 409: already replaced); ordering without it" in caplog.text
        assert ca.orders_created() == 3  # the refused order with `replaces` was never created


def test_the_cas_window_sets_the_renewal_time_and_a_bad_answer_is_ignored(
    start_fleet: Callable[..., Fleet],
) -> None:
    # One-hour certificates: pebble's window is their whole life, so its midpoint (30 min)
    # is earlier than the operator's own rule, 2/3 of the hour (40 min), as the default
    # 7-day renewBeforeSeconds is longer than the hour.
    fleet = start_fleet(
        acme={"pebble": "module", "certificate_validity_seconds": 3600}, operator_args=FAST_ARI
    )
    domain = new_domain()
    fleet.apply_certificate("automatic.yaml", "web", domain)
    fleet.install.wait_for_condition(fleet.namespace, "web", "True")
    leaf = leaf_of(fleet, domain)
    start, end = pebbles_window(fleet, leaf)
    assert own_rule(leaf) > start + (end - start) / 2, "no test: pebble's window is not earlier"

    # At once, from the issuance on: the middle of the CA's window.
    shown = renewal_time_in_status(fleet)
    assert start <= shown <= end
    assert close_to(shown, start + (end - start) / 2)
    assert shown < own_rule(leaf) - timedelta(minutes=9)
    assert "(the CA's renewal window, RFC 9773)" in status(fleet)["conditions"][0]["message"]

    # Any window the CA chooses is followed at the next recheck...
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=10)
    fleet.ca.set_renewal_info(
        leaf.public_bytes(serialization.Encoding.PEM),
        json.dumps(
            {
                "suggestedWindow": {
                    "start": soon.isoformat().replace("+00:00", "Z"),
                    "end": (soon + timedelta(minutes=2)).isoformat().replace("+00:00", "Z"),
                }
            }
        ),
    )
    wait_for(
        "the CA's new window in the status",
        lambda: close_to(renewal_time_in_status(fleet), soon + timedelta(minutes=1)),
        15,
    )
    # ... and an answer that is no window at all leaves the operator's own rule in charge.
    fleet.ca.set_renewal_info(leaf.public_bytes(serialization.Encoding.PEM), "{not json")
    wait_for(
        "the operator's own renewal time",
        lambda: close_to(renewal_time_in_status(fleet), own_rule(leaf)),
        15,
    )
    assert status(fleet)["conditions"][0]["status"] == "True"
    assert "(2/3 of its" in status(fleet)["conditions"][0]["message"]
    assert fleet.ca.orders_created() == 1
    assert fleet.install.operator is not None
    assert "unusable, ignored" in fleet.install.operator.log_path.read_text()


def test_a_revoked_certificate_is_renewed_by_the_operator_by_itself(
    start_fleet: Callable[..., Fleet],
) -> None:
    # pebble's default 90-day certificates: nothing would be due for two months.
    fleet = start_fleet(acme={"pebble": "module"}, operator_args=FAST_ARI)
    domain = new_domain()
    fleet.apply_certificate("automatic.yaml", "web", domain)
    first = fleet.install.wait_for_condition(fleet.namespace, "web", "True")["status"]
    leaf = leaf_of(fleet, domain)
    assert renewal_time_in_status(fleet) > datetime.now(UTC) + timedelta(days=50)

    # Revoked with the certificate's own key (RFC 8555 7.6): pebble's ARI now says "renew now".
    stored = fleet.stored(domain)
    assert stored is not None
    revoke(fleet, leaf, stored.privkey)
    assert pebbles_window(fleet, leaf)[1] < datetime.now(UTC)

    wait_for("the renewal", lambda: (fleet.stored(domain) or stored).pointer.revision == 2, 30)
    renewed = fleet.install.wait_for_condition(fleet.namespace, "web", "True")["status"]
    assert renewed["serialNumber"] != first["serialNumber"]
    assert renewal_time_in_status(fleet) > datetime.now(UTC) + timedelta(days=50)
    assert fleet.ca.orders_created() == 2
    # The new order named the revoked certificate as the one it replaces (RFC 9773 5).
    assert replacements(fleet.ca) == 1

    # The new certificate is not revoked: rechecks go on, renewals do not. Two more answers
    # from pebble's renewalInfo: the daemon's rechecks run one after the other, so the one that
    # read the first answer has acted on it (and would have ordered) before the second asks.
    asked = renewal_info_requests(fleet)
    wait_for(
        lambda: f"two more renewalInfo answers (after {asked:g}: {renewal_info_requests(fleet):g})",
        lambda: renewal_info_requests(fleet) >= asked + 2,
        15,
    )
    stored_now = fleet.stored(domain)
    assert stored_now is not None and stored_now.pointer.revision == 2
    assert fleet.ca.orders_created() == 2


def revoke(fleet: Fleet, leaf: x509.Certificate, key_pem: bytes) -> None:
    key = jwk.JWK.load(key_pem)
    alg = jwa.RS256
    if isinstance(key, jwk.JWKEC):
        alg = {256: jwa.ES256, 384: jwa.ES384}[key.key.curve.key_size]
    network = client.ClientNetwork(
        key,
        alg=alg,
        verify_ssl=str(fleet.ca.listener_ca_bundle),  # type: ignore[arg-type]
    )
    acme = client.ClientV2(client.ClientV2.get_directory(fleet.ca.directory_url, network), network)
    acme.revoke(leaf, 0)
