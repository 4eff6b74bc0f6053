"""certfleet's use of lexicon against recorded provider answers (responses): the method,
path, auth header and body each provider's API documents, an error and a rate limit."""

from __future__ import annotations

import json
from typing import Any

import pytest
import responses
from responses import matchers

from certfleet.acme_issuer.dns01.lexicon_records import LexiconRecords, provider_options
from certfleet.acme_issuer.errors import Dns01Error

FQDN, ZONE, VALUE = "_acme-challenge.www.example.com", "example.com", "dGhlLXZhbHVl"
CF = "https://api.cloudflare.com/client/v4"
DO = "https://api.digitalocean.com/v2"


def _cf_page(result: list[dict[str, Any]]) -> dict[str, Any]:
    return {"success": True, "result": result, "result_info": {"page": 1, "total_pages": 1}}


def _cf_record(content: str) -> dict[str, Any]:
    return {"id": "r1", "type": "TXT", "name": FQDN, "ttl": 60, "content": content}


@responses.activate
def test_cloudflare_adds_one_txt_value_with_a_bearer_token() -> None:
    bearer = matchers.header_matcher({"Authorization": "Bearer cf-token"})
    responses.get(
        f"{CF}/zones",
        json={**_cf_page([{"id": "z1", "name": ZONE}])},
        match=[bearer, matchers.query_param_matcher({"page": "1", "per_page": "100"})],
    )
    listing = matchers.query_param_matcher({"per_page": "100", "type": "TXT", "name": FQDN})
    responses.get(f"{CF}/zones/z1/dns_records", json=_cf_page([]), match=[bearer, listing])
    responses.post(
        f"{CF}/zones/z1/dns_records",
        json={"success": True, "result": _cf_record(VALUE)},
        match=[
            bearer,
            matchers.json_params_matcher(
                {"type": "TXT", "name": FQDN, "content": VALUE, "data": None, "ttl": 60}
            ),
        ],
    )
    responses.get(
        f"{CF}/zones/z1/dns_records", json=_cf_page([_cf_record(VALUE)]), match=[bearer, listing]
    )
    LexiconRecords("cloudflare", {"auth_token": "cf-token"}).add_txt(ZONE, FQDN, VALUE)
    assert [call.request.method for call in responses.calls] == ["GET", "GET", "POST", "GET"]


@responses.activate
def test_cloudflare_refusal_and_rate_limit_are_errors_without_the_token() -> None:
    responses.get(f"{CF}/zones", status=403, json={"success": False, "errors": [{"code": 9109}]})
    with pytest.raises(Dns01Error, match="HTTP 403") as refused:
        LexiconRecords("cloudflare", {"auth_token": "cf-token"}).add_txt(ZONE, FQDN, VALUE)
    assert "cf-token" not in str(refused.value)
    responses.replace(
        responses.GET, f"{CF}/zones", status=429, json={"success": False, "errors": []}
    )
    with pytest.raises(Dns01Error, match="HTTP 429") as limited:
        LexiconRecords("cloudflare", {"auth_token": "cf-token"}).remove_txt(ZONE, FQDN, VALUE)
    assert limited.value.retryable


@responses.activate
def test_digitalocean_posts_a_relative_name_and_deletes_only_our_value() -> None:
    bearer = matchers.header_matcher({"Authorization": "Bearer do-token"})
    responses.get(f"{DO}/domains/{ZONE}", json={"domain": {"name": ZONE}}, match=[bearer])
    ours = {"id": 7, "type": "TXT", "name": "_acme-challenge.www", "data": VALUE, "ttl": 60}
    other = {**ours, "id": 8, "data": "someone-else"}
    listing = {"domain_records": [other], "links": {}, "meta": {"total": 1}}
    responses.get(f"{DO}/domains/{ZONE}/records", json=listing, match=[bearer])
    responses.post(
        f"{DO}/domains/{ZONE}/records",
        json={"domain_record": ours},
        match=[
            bearer,
            matchers.json_params_matcher(
                {"type": "TXT", "name": "_acme-challenge.www", "data": VALUE, "ttl": 60}
            ),
        ],
    )
    both = {"domain_records": [other, ours], "links": {}, "meta": {"total": 2}}
    responses.get(f"{DO}/domains/{ZONE}/records", json=both, match=[bearer])
    records = LexiconRecords("digitalocean", {"auth_token": "do-token"})
    records.add_txt(ZONE, FQDN, VALUE)

    responses.reset()
    responses.get(f"{DO}/domains/{ZONE}", json={"domain": {"name": ZONE}}, match=[bearer])
    responses.get(f"{DO}/domains/{ZONE}/records", json=both, match=[bearer])
    responses.delete(f"{DO}/domains/{ZONE}/records/7", status=204, match=[bearer])
    records.remove_txt(ZONE, FQDN, VALUE)
    deleted = [call.request.url for call in responses.calls if call.request.method == "DELETE"]
    assert deleted == [f"{DO}/domains/{ZONE}/records/7"]  # never id 8, the other value


@responses.activate
def test_a_provider_whose_create_replaces_the_set_is_caught() -> None:
    bearer = matchers.header_matcher({"Authorization": "Bearer do-token"})
    responses.get(f"{DO}/domains/{ZONE}", json={"domain": {"name": ZONE}}, match=[bearer])
    other = {"id": 8, "type": "TXT", "name": "_acme-challenge.www", "data": "first", "ttl": 60}
    ours = {**other, "id": 9, "data": VALUE}
    responses.get(f"{DO}/domains/{ZONE}/records", json={"domain_records": [other], "links": {}})
    responses.post(f"{DO}/domains/{ZONE}/records", json={"domain_record": ours})
    responses.get(f"{DO}/domains/{ZONE}/records", json={"domain_records": [ours], "links": {}})
    with pytest.raises(Dns01Error, match="replaced 1 other value"):
        LexiconRecords("digitalocean", {"auth_token": "do-token"}).add_txt(ZONE, FQDN, VALUE)


def test_secret_keys_must_be_option_names() -> None:
    assert provider_options({"auth_token": b" t \n"}) == {"auth_token": "t"}
    with pytest.raises(Dns01Error, match="not a lexicon option"):
        provider_options({"Auth-Token": b"t"})
    with pytest.raises(Dns01Error, match="not one lexicon offers"):
        LexiconRecords("no-such-provider", {})


def test_the_zone_is_never_guessed_with_tldextract(monkeypatch: pytest.MonkeyPatch) -> None:
    import tldextract

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("tldextract was asked")

    monkeypatch.setattr(tldextract.TLDExtract, "__call__", refuse)
    with responses.RequestsMock() as mock:
        mock.get(f"{DO}/domains/{ZONE}", status=404, json={"id": "not_found"})
        with pytest.raises(Dns01Error, match="HTTP 404"):
            LexiconRecords("digitalocean", {"auth_token": "t"}).remove_txt(ZONE, FQDN, VALUE)


LINODE = "https://api.linode.com/v4"
VULTR = "https://api.vultr.com/v2"


@responses.activate
def test_linode_finds_the_domain_id_and_posts_a_relative_name() -> None:
    bearer = matchers.header_matcher({"Authorization": "Bearer li-token"})
    responses.get(f"{LINODE}/domains", json={"data": [{"id": 42, "domain": ZONE}]}, match=[bearer])
    empty = {"data": [], "page": 1, "pages": 1}
    ours = {"id": 5, "type": "TXT", "name": "_acme-challenge.www", "target": VALUE, "ttl_sec": 300}
    responses.get(f"{LINODE}/domains/42/records", json=empty, match=[bearer])
    responses.get(f"{LINODE}/domains/42/records", json=empty, match=[bearer])
    responses.post(
        f"{LINODE}/domains/42/records",
        json=ours,
        match=[
            bearer,
            # Linode rounds TTLs up to its own steps: 0 means its default (300 s).
            matchers.json_params_matcher(
                {"name": "_acme-challenge.www", "type": "TXT", "target": VALUE, "ttl_sec": 0}
            ),
        ],
    )
    responses.get(f"{LINODE}/domains/42/records", json={**empty, "data": [ours]}, match=[bearer])
    LexiconRecords("linode4", {"auth_token": "li-token"}).add_txt(ZONE, FQDN, VALUE)
    # Linode's API takes the domain filter as a JSON X-Filter header.
    assert json.loads(responses.calls[0].request.headers["X-Filter"]) == {"domain": ZONE}


@responses.activate
def test_linode_rate_limit_is_a_retryable_error() -> None:
    responses.get(f"{LINODE}/domains", status=429, json={"errors": [{"reason": "Too many"}]})
    with pytest.raises(Dns01Error, match="HTTP 429") as limited:
        LexiconRecords("linode4", {"auth_token": "li-token"}).add_txt(ZONE, FQDN, VALUE)
    assert limited.value.retryable and "li-token" not in str(limited.value)


@responses.activate
def test_vultr_quotes_the_txt_data_and_follows_the_cursor() -> None:
    bearer = matchers.header_matcher({"Authorization": "Bearer vu-token"})
    no_more = {"links": {"next": "", "prev": ""}, "total": 1}
    responses.get(
        f"{VULTR}/domains", json={"domains": [{"domain": ZONE}], "meta": no_more}, match=[bearer]
    )
    page_one = {"records": [], "meta": {"links": {"next": "c2", "prev": ""}, "total": 0}}
    page_two = {"records": [], "meta": no_more}
    ours = {
        "id": "r-1",
        "type": "TXT",
        "name": "_acme-challenge.www",
        "data": f'"{VALUE}"',
        "ttl": 60,
        "priority": 0,
    }
    for _ in range(2):  # the check before the add, and create_record's own
        responses.get(f"{VULTR}/domains/{ZONE}/records", json=page_one, match=[bearer])
        responses.get(
            f"{VULTR}/domains/{ZONE}/records",
            json=page_two,
            match=[bearer, matchers.query_param_matcher({"cursor": "c2"})],
        )
    responses.post(
        f"{VULTR}/domains/{ZONE}/records",
        json={"record": ours},
        match=[
            bearer,
            matchers.json_params_matcher(
                {
                    "type": "TXT",
                    "name": "_acme-challenge.www",
                    "data": f'"{VALUE}"',
                    "priority": 0,
                    "ttl": 60,
                }
            ),
        ],
    )
    responses.get(
        f"{VULTR}/domains/{ZONE}/records", json={"records": [ours], "meta": no_more}, match=[bearer]
    )
    LexiconRecords("vultr", {"auth_token": "vu-token"}).add_txt(ZONE, FQDN, VALUE)


@responses.activate
def test_vultr_error_answer_is_reported_with_its_status() -> None:
    responses.get(f"{VULTR}/domains", status=401, json={"error": "Invalid API token."})
    with pytest.raises(Dns01Error, match="HTTP 401"):
        LexiconRecords("vultr", {"auth_token": "bad"}).remove_txt(ZONE, FQDN, VALUE)


def test_route53_upserts_both_values_into_one_record_set_and_removes_only_ours(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import boto3
    from moto import mock_aws

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        route53 = boto3.client("route53")
        zone_id = route53.create_hosted_zone(Name=f"{ZONE}.", CallerReference="certfleet")[
            "HostedZone"
        ]["Id"]
        records = LexiconRecords(
            "route53", {"auth_access_key": "AKIDEXAMPLE", "auth_access_secret": "s3cr3t"}
        )
        records.add_txt(ZONE, FQDN, "first")
        records.add_txt(ZONE, FQDN, VALUE)  # a second challenge at the same name

        def values() -> list[str]:
            sets = route53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
            return sorted(
                record["Value"]
                for found in sets
                if found["Name"] == f"{FQDN}." and found["Type"] == "TXT"
                for record in found["ResourceRecords"]
            )

        assert values() == sorted(['"first"', f'"{VALUE}"'])
        records.remove_txt(ZONE, FQDN, VALUE)
        assert values() == ['"first"']
