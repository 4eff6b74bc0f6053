"""certfleet's use of Exoscale's SDK against recorded answers of Exoscale's DNS API v2
(responses): the method, path, EXO2-HMAC-SHA256 signature (recomputed here from the algorithm
Exoscale documents) and body of each request, the asynchronous operations, an error answer and
a rate-limit answer.

The answers follow Exoscale's API v2 reference: `GET /v2/dns-domain` lists
`{"dns-domains": [{"id", "unicode-name", "created-at"}]}`, `GET /v2/dns-domain/{id}/record`
lists `{"dns-domain-records": [...]}` (names relative to the domain), `POST` and `DELETE` answer
with an operation whose `reference.id` is the record's id, `GET /v2/operation/{id}` polls it,
and errors are `{"message": ...}` (`Invalid request signature` is what Exoscale answers a
wrong secret, with 403).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import time
from typing import Any, cast
from urllib.parse import urlsplit

import pytest
import requests
import responses
from responses import matchers

from certfleet.acme_issuer.dns01.exoscale import (
    DEFAULT_API_ZONE,
    MAX_RESPONSE_BYTES,
    Dns01RateLimitedError,
    ExoscaleRecords,
    exoscale_records,
    relative_name,
)
from certfleet.acme_issuer.errors import Dns01Error
from certfleet.acme_issuer.http01 import ChallengeStore
from certfleet.controller.solvers import ChallengeSolvers
from certfleet.core.errors import RetryLaterError
from certfleet.kube.gateway import KubernetesGateway, SecretData

FQDN, ZONE, VALUE = "_acme-challenge.www.example.com", "example.com", "dGhlLXZhbHVl"
NAME = "_acme-challenge.www"
KEY, SECRET = "EXO29147e9f89102b7ac1e88514", "exo-secret-do-not-show"
API = "https://api-de-fra-1.exoscale.com/v2"
DOMAIN_ID = "6b6a3ec6-55ad-4a11-9b5e-3e6a0e7d9f10"
OTHER_DOMAIN_ID = "0d8b7c42-1f2e-4e7b-8d5a-2c7e0b1a9f22"
OURS_ID, OTHERS_ID = "a1f0c6d2-0d5e-4c1b-9a51-6f0b7d2e3c41", "b2e1d7e3-1e6f-4d2c-8b62-7e1c8e3f4d52"
OPERATION_ID = "e2047130-b86e-11ef-83b3-0d8312b2c2d7"
SIGNED = re.compile(
    r"EXO2-HMAC-SHA256 credential=(?P<key>[^,]+),expires=(?P<expires>\d+),"
    r"signature=(?P<signature>[A-Za-z0-9+/]+=*)"
)


def _domains() -> dict[str, Any]:
    return {
        "dns-domains": [
            {
                "id": OTHER_DOMAIN_ID,
                "unicode-name": "example.org",
                "created-at": "2024-05-02T10:00:00Z",
            },
            {"id": DOMAIN_ID, "unicode-name": ZONE, "created-at": "2024-05-02T10:00:00Z"},
        ]
    }


def _record(record_id: str, content: str, name: str = NAME, kind: str = "TXT") -> dict[str, Any]:
    return {
        "id": record_id,
        "name": name,
        "type": kind,
        "content": content,
        "ttl": 60,
        "priority": 0,
        "system-record": False,
        "created-at": "2026-12-02T01:00:00Z",
        "updated-at": "2026-12-02T01:00:00Z",
    }


def _records(*records: dict[str, Any]) -> dict[str, Any]:
    soa = {**_record("c3f2e8f4-2f70-4e3d-9c73-8f2d9f4a5e63", "ns1.exoscale.ch.", "", "SOA")}
    return {"dns-domain-records": [{**soa, "system-record": True}, *records]}


def _operation(state: str, record_id: str = OURS_ID, **extra: str) -> dict[str, Any]:
    return {
        "id": OPERATION_ID,
        "state": state,
        "reference": {
            "id": record_id,
            "link": f"/v2/dns-domain/{DOMAIN_ID}/record/{record_id}",
            "command": "get-dns-domain-record",
        },
        **extra,
    }


class Clock:
    """A monotonic clock that the fake sleep moves on."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _writer(clock: Clock | None = None, timeout: float = 30.0) -> ExoscaleRecords:
    clock = clock or Clock()
    return ExoscaleRecords(
        KEY, SECRET, "de-fra-1", timeout=timeout, sleep=clock.sleep, monotonic=clock.monotonic
    )


def _check_signed(request: requests.PreparedRequest) -> None:
    """The Authorization header as Exoscale's "API Request Signature" page describes it: the
    message is the method and path, the body, the query values, the header values and the
    expiry, joined by newlines; the signature is its base64 HMAC-SHA256 under the secret."""
    header = request.headers["Authorization"]
    assert isinstance(header, str)
    signed = SIGNED.fullmatch(header)
    assert signed, header
    assert signed["key"] == KEY
    expires = int(signed["expires"])
    assert time.time() < expires <= time.time() + 15 * 60  # a signature expires soon
    url = urlsplit(request.url or "")
    assert url.query == ""  # nothing unsigned: no signed-query-args needed
    sent = request.body or b""
    body = sent.encode() if isinstance(sent, str) else sent
    assert isinstance(body, bytes)
    message = b"\n".join(
        [f"{request.method} {url.path}".encode(), body, b"", b"", str(expires).encode()]
    )
    digest = hmac.new(SECRET.encode(), message, hashlib.sha256).digest()
    assert signed["signature"] == base64.b64encode(digest).decode()


def _calls() -> list[tuple[str, str]]:
    return [
        (call.request.method or "", urlsplit(call.request.url or "").path)
        for call in responses.calls
    ]


@responses.activate
def test_add_posts_one_signed_txt_record_beside_the_other_value_and_polls_its_operation() -> None:
    clock = Clock()
    responses.get(f"{API}/dns-domain", json=_domains())
    responses.get(
        f"{API}/dns-domain/{DOMAIN_ID}/record", json=_records(_record(OTHERS_ID, "someone-else"))
    )
    responses.post(
        f"{API}/dns-domain/{DOMAIN_ID}/record",
        json=_operation("pending"),
        match=[
            matchers.json_params_matcher(
                {"name": NAME, "type": "TXT", "content": VALUE, "ttl": 60}
            ),
            matchers.header_matcher({"Content-Type": "application/json"}),
        ],
    )
    responses.get(f"{API}/operation/{OPERATION_ID}", json=_operation("pending"))
    responses.get(f"{API}/operation/{OPERATION_ID}", json=_operation("success"))

    _writer(clock).add_txt(ZONE, FQDN, VALUE)

    assert _calls() == [
        ("GET", "/v2/dns-domain"),
        ("GET", f"/v2/dns-domain/{DOMAIN_ID}/record"),
        ("POST", f"/v2/dns-domain/{DOMAIN_ID}/record"),  # a record of its own: no PUT, no DELETE
        ("GET", f"/v2/operation/{OPERATION_ID}"),
        ("GET", f"/v2/operation/{OPERATION_ID}"),
    ]
    for call in responses.calls:
        _check_signed(call.request)
    assert clock.slept == [1.0, 1.0]  # polled until it settled, not once and hoped


@responses.activate
def test_every_request_has_a_timeout_within_the_operations_time() -> None:
    responses.get(f"{API}/dns-domain", json=_domains())
    responses.get(f"{API}/dns-domain/{DOMAIN_ID}/record", json=_records())
    responses.post(f"{API}/dns-domain/{DOMAIN_ID}/record", json=_operation("success"))
    _writer(timeout=12.0).add_txt(ZONE, FQDN, VALUE)
    timeouts = [call.request.req_kwargs["timeout"] for call in responses.calls]  # type: ignore[attr-defined]
    assert len(timeouts) == 3 and all(0 < timeout <= 12.0 for timeout in timeouts)


@responses.activate
def test_a_value_already_there_is_not_added_twice() -> None:
    responses.get(f"{API}/dns-domain", json=_domains())
    responses.get(
        f"{API}/dns-domain/{DOMAIN_ID}/record",
        json=_records(_record(OTHERS_ID, "someone-else"), _record(OURS_ID, f'"{VALUE}"')),
    )
    _writer().add_txt(ZONE, FQDN, VALUE)  # a POST would find no recorded answer and fail
    assert [method for method, _ in _calls()] == ["GET", "GET"]


@responses.activate
def test_remove_deletes_only_the_record_holding_our_value() -> None:
    responses.get(f"{API}/dns-domain", json=_domains())
    responses.get(
        f"{API}/dns-domain/{DOMAIN_ID}/record",
        json=_records(
            _record(OTHERS_ID, "someone-else"),
            _record(OURS_ID, VALUE),
            _record("d4a3f9a5-3a81-4f4e-8d84-9a3eaf5b6f74", VALUE, name="_acme-challenge"),
        ),
    )
    responses.delete(f"{API}/dns-domain/{DOMAIN_ID}/record/{OURS_ID}", json=_operation("success"))
    _writer().remove_txt(ZONE, FQDN, VALUE)
    deleted = [path for method, path in _calls() if method == "DELETE"]
    # Never the other value at the name, nor our value at another name.
    assert deleted == [f"/v2/dns-domain/{DOMAIN_ID}/record/{OURS_ID}"]
    for call in responses.calls:
        _check_signed(call.request)


@responses.activate
def test_two_values_at_one_name_are_removed_each_on_its_own() -> None:
    second = "c2Vjb25kLXZhbHVl"
    responses.get(f"{API}/dns-domain", json=_domains())
    listing = f"{API}/dns-domain/{DOMAIN_ID}/record"
    responses.get(listing, json=_records(_record(OURS_ID, VALUE), _record(OTHERS_ID, second)))
    responses.delete(f"{listing}/{OURS_ID}", json=_operation("success"))
    _writer().remove_txt(ZONE, FQDN, VALUE)
    assert [path for method, path in _calls() if method == "DELETE"] == [
        f"/v2/dns-domain/{DOMAIN_ID}/record/{OURS_ID}"
    ]


@responses.activate
def test_a_value_that_is_gone_is_no_error_to_remove() -> None:
    responses.get(f"{API}/dns-domain", json=_domains())
    listing = f"{API}/dns-domain/{DOMAIN_ID}/record"
    responses.get(listing, json=_records(_record(OURS_ID, VALUE)))
    responses.delete(f"{listing}/{OURS_ID}", status=404, json={"message": "Record not found"})
    _writer().remove_txt(ZONE, FQDN, VALUE)  # deleted meanwhile by someone else
    responses.replace(responses.GET, listing, json=_records())
    _writer().remove_txt(ZONE, FQDN, VALUE)


@responses.activate
def test_a_zone_the_account_does_not_hold_is_a_configuration_error() -> None:
    responses.get(f"{API}/dns-domain", json={"dns-domains": []})
    with pytest.raises(Dns01Error, match="not a DNS domain of this Exoscale account") as missing:
        _writer().add_txt(ZONE, FQDN, VALUE)
    assert not missing.value.retryable


@responses.activate
def test_a_refusal_is_a_clear_error_without_the_secret(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    responses.get(f"{API}/dns-domain", status=403, json={"message": "Invalid request signature"})
    with pytest.raises(Dns01Error, match="HTTP 403: Invalid request signature") as refused:
        _writer().add_txt(ZONE, FQDN, VALUE)
    assert not refused.value.retryable  # the key or its secret must be fixed first
    responses.replace(responses.GET, f"{API}/dns-domain", json=_domains())
    responses.get(
        f"{API}/dns-domain/{DOMAIN_ID}/record", status=404, json={"message": "Domain not found"}
    )
    with pytest.raises(Dns01Error, match="HTTP 404: Domain not found") as missing:
        _writer().remove_txt(ZONE, FQDN, VALUE)
    for error in (refused.value, missing.value):
        assert SECRET not in str(error) and "signature=" not in str(error)
    assert SECRET not in caplog.text and "signature=" not in caplog.text


@responses.activate
def test_a_rate_limit_is_retried_later_after_exoscales_retry_after() -> None:
    responses.get(
        f"{API}/dns-domain",
        status=429,
        json={"message": "Too Many Requests"},
        headers={"Retry-After": "10"},
    )
    with pytest.raises(Dns01RateLimitedError, match="HTTP 429: Too Many Requests") as limited:
        _writer().add_txt(ZONE, FQDN, VALUE)
    assert limited.value.retryable and isinstance(limited.value, RetryLaterError)
    assert limited.value.retry_after_seconds == 10.0
    assert SECRET not in str(limited.value)
    responses.replace(responses.GET, f"{API}/dns-domain", status=429, json={"message": "Slow down"})
    with pytest.raises(Dns01RateLimitedError) as unsaid:
        _writer().remove_txt(ZONE, FQDN, VALUE)
    assert unsaid.value.retry_after_seconds is None  # the controller's own back-off then


@responses.activate
def test_a_failed_operation_says_why() -> None:
    responses.get(f"{API}/dns-domain", json=_domains())
    responses.get(f"{API}/dns-domain/{DOMAIN_ID}/record", json=_records())
    responses.post(
        f"{API}/dns-domain/{DOMAIN_ID}/record",
        json=_operation("failure", reason="incorrect", message="invalid record content"),
    )
    with pytest.raises(Dns01Error, match=r"failure \(incorrect\) invalid record content") as failed:
        _writer().add_txt(ZONE, FQDN, VALUE)
    assert not failed.value.retryable


@responses.activate
def test_an_operation_pending_for_ever_is_bounded() -> None:
    clock = Clock()
    responses.get(f"{API}/dns-domain", json=_domains())
    responses.get(f"{API}/dns-domain/{DOMAIN_ID}/record", json=_records())
    responses.post(f"{API}/dns-domain/{DOMAIN_ID}/record", json=_operation("pending"))
    responses.get(f"{API}/operation/{OPERATION_ID}", json=_operation("pending"))
    with pytest.raises(Dns01Error, match="still pending after 5 s") as pending:
        _writer(clock, timeout=5.0).add_txt(ZONE, FQDN, VALUE)
    assert pending.value.retryable
    assert len(clock.slept) == 4 and clock.now <= 1005.0


@responses.activate
def test_no_answer_within_the_time_is_a_timeout_error() -> None:
    responses.get(f"{API}/dns-domain", body=requests.ReadTimeout("read timed out"))
    with pytest.raises(Dns01Error, match="did not answer within 30 s") as late:
        _writer().add_txt(ZONE, FQDN, VALUE)
    assert late.value.retryable


@responses.activate
def test_a_request_after_the_operations_time_is_not_sent() -> None:
    clock = Clock()
    records = _writer(clock, timeout=5.0)

    def listing(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        clock.now += 6.0  # the listing took the operation's whole time
        return 200, {}, json.dumps(_domains())

    responses.add_callback(responses.GET, f"{API}/dns-domain", callback=listing)
    with pytest.raises(Dns01Error, match="did not answer within 5 s"):
        records.add_txt(ZONE, FQDN, VALUE)
    assert len(responses.calls) == 1  # the record listing was never sent


@responses.activate
def test_each_operation_has_its_own_time() -> None:
    clock = Clock()
    records = _writer(clock, timeout=5.0)
    responses.get(f"{API}/dns-domain", json=_domains())
    listing = f"{API}/dns-domain/{DOMAIN_ID}/record"
    responses.get(listing, json=_records())
    responses.post(listing, json=_operation("success"))
    records.add_txt(ZONE, FQDN, VALUE)
    clock.now += 60.0  # the propagation wait and the CA's validation, between add and remove
    responses.replace(responses.GET, listing, json=_records(_record(OURS_ID, VALUE)))
    responses.delete(f"{listing}/{OURS_ID}", json=_operation("success"))
    records.remove_txt(ZONE, FQDN, VALUE)
    assert [method for method, _ in _calls()][-1] == "DELETE"


@responses.activate
def test_an_oversized_answer_is_not_read() -> None:
    responses.get(f"{API}/dns-domain", body=b"[" * (MAX_RESPONSE_BYTES + 1))
    with pytest.raises(Dns01Error, match="longer than"):
        _writer().add_txt(ZONE, FQDN, VALUE)


def test_the_secret_gives_the_key_the_secret_and_the_api_zone() -> None:
    records = exoscale_records({"auth_key": KEY.encode(), "auth_secret": SECRET.encode()})
    assert records.api_zone == DEFAULT_API_ZONE == "ch-gva-2"
    zoned = exoscale_records(
        {"auth_key": KEY.encode(), "auth_secret": b"s\n", "api_zone": b"at-vie-1"}
    )
    assert zoned.api_zone == "at-vie-1"
    assert SECRET not in repr(records) and KEY not in repr(records)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"auth_key": KEY.encode()}, "needs the key 'auth_secret'"),
        ({"auth_secret": SECRET.encode()}, "needs the key 'auth_key'"),
        ({"auth_key": KEY.encode(), "auth_secret": b"x", "auth_token": b"x"}, "'auth_token'"),
        ({"auth_key": SECRET.encode() + b" x", "auth_secret": b"x"}, "is not an API key"),
        ({"auth_key": KEY.encode(), "auth_secret": b"x", "api_zone": b"us-east-1"}, "Invalid zone"),
        ({"auth_key": KEY.encode(), "auth_secret": b"x" * 2000}, "more than 1024 bytes"),
    ],
)
def test_a_wrong_secret_is_refused_saying_which_key(data: dict[str, bytes], message: str) -> None:
    with pytest.raises(Dns01Error, match=re.escape(message)) as refused:
        exoscale_records(data)
    assert not refused.value.retryable and SECRET not in str(refused.value)


def test_record_names_are_relative_to_the_zone() -> None:
    assert relative_name(FQDN, ZONE) == NAME
    assert relative_name("_acme-challenge.Example.com.", "example.com") == "_acme-challenge"
    assert relative_name("example.com", "example.com") == ""
    with pytest.raises(Dns01Error, match="is not in the zone"):
        relative_name("_acme-challenge.example.net", ZONE)


class _OneSecret:
    def read_secret(self, namespace: str, name: str) -> SecretData:
        return SecretData("Opaque", {"auth_key": KEY.encode(), "auth_secret": SECRET.encode()})


def test_the_provider_exoscale_is_this_writer_not_lexicons() -> None:
    solvers = ChallengeSolvers(cast(KubernetesGateway, _OneSecret()), "certfleet", ChallengeStore())
    assert isinstance(solvers._records("exoscale:default/dns-exoscale", "default"), ExoscaleRecords)
