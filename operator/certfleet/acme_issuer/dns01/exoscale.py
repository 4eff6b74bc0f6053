"""TXT records through Exoscale's DNS API v2, by Exoscale's own SDK (`exoscale.api.v2.Client`).

API v2 lives at `https://api-<zone>.exoscale.com/v2` (`GET /dns-domain`,
`GET|POST /dns-domain/{domain-id}/record`, `DELETE /dns-domain/{domain-id}/record/{record-id}`,
`GET /operation/{id}`), every request signed by the SDK (`Authorization: EXO2-HMAC-SHA256
credential=<key>,expires=<unix time>,signature=<base64 HMAC-SHA256>`). dns-lexicon's
`exoscale` provider speaks the deprecated DNS API v1 instead, so `exoscale` comes here.

Each record is one value at one name, with an id of its own: a create adds a record beside
the others at the name (two challenges at `_acme-challenge.example.com` are two records), and
a removal deletes exactly the records holding our value. Creates and deletes answer with an
asynchronous operation (`pending`, then `success`, `failure` or `timeout`; its `reference.id`
is the record's id): each is polled until it has settled, within the operation's time.

The SDK sets no timeout and reads whole bodies: a transport adapter mounted on its session
(requests' extension point) gives every request what is left of the operation's time and
reads at most `MAX_RESPONSE_BYTES`. The key and secret come only from the Secret; neither
appears in a message (the SDK's own error text is not passed on, only Exoscale's `message`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import idna
import requests
from exoscale.api import exceptions as sdk_errors
from exoscale.api.v2 import Client
from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter

from certfleet.acme_issuer.dns01.records import CHALLENGE_TTL_SECONDS
from certfleet.acme_issuer.errors import Dns01Error
from certfleet.core.errors import RetryLaterError

PROVIDER = "exoscale"
# The Secret's keys: the names lexicon's exoscale provider used, so Secrets keep working.
KEY = "auth_key"
SECRET = "auth_secret"  # noqa: S105 - the name of a key, not a password
API_ZONE = "api_zone"
DEFAULT_API_ZONE = "ch-gva-2"  # the SDK's default, as lego's; the DNS API is global anyway
DEFAULT_TIMEOUT_SECONDS = 30.0
POLL_INTERVAL_SECONDS = 1.0
# A zone's record list is the largest answer: thousands of records stay well below this.
MAX_RESPONSE_BYTES = 8 * 1024 * 1024
MAX_RETRY_AFTER_SECONDS = 3600.0
_MAX_SECRET_VALUE_BYTES = 1024
_API_KEY = re.compile(r"[A-Za-z0-9._-]{1,128}")
_API_ZONE = re.compile(r"[a-z0-9-]{1,32}")
# Ids from Exoscale's answers go into request paths: UUIDs, nothing else.
_ID = re.compile(r"[0-9A-Fa-f-]{1,64}")
_RETRYABLE_REASONS = frozenset({"busy", "unavailable", "interrupted", "fault", "unknown"})


class Dns01RateLimitedError(Dns01Error, RetryLaterError):
    """Exoscale answered 429: retry later, after its Retry-After when it gave one."""

    def __init__(self, message: str, retry_after_seconds: float | None) -> None:
        Dns01Error.__init__(self, message, retryable=True)
        self.retry_after_seconds = retry_after_seconds


class DnsApi(Protocol):
    """The part of `exoscale.api.v2.Client` used here (the SDK is untyped: its methods are
    generated from its OpenAPI document at import)."""

    http_client: requests.Session

    def list_dns_domains(self) -> Any: ...

    def list_dns_domain_records(self, *, domain_id: str) -> Any: ...

    def create_dns_domain_record(
        self, *, domain_id: str, name: str, type: str, content: str, ttl: int
    ) -> Any: ...

    def delete_dns_domain_record(self, *, domain_id: str, record_id: str) -> Any: ...

    def get_operation(self, *, id: str) -> Any: ...


def exoscale_records(data: Mapping[str, bytes]) -> ExoscaleRecords:
    """The record writer of a Secret's keys (`auth_key`, `auth_secret`, optional
    `api_zone`), validated and bounded, since they come from a user."""
    unknown = sorted(set(data) - {KEY, SECRET, API_ZONE})
    if unknown:
        raise Dns01Error(
            f"the exoscale Secret has the key {unknown[0][:64]!r}; it takes only "
            f"{KEY!r}, {SECRET!r} and {API_ZONE!r}",
            retryable=False,
        )

    def text(name: str, default: str | None = None) -> str:
        value = data.get(name)
        if value is None:
            if default is None:
                raise Dns01Error(f"the exoscale Secret needs the key {name!r}", retryable=False)
            return default
        if len(value) > _MAX_SECRET_VALUE_BYTES:
            raise Dns01Error(
                f"the exoscale Secret's {name!r} holds more than {_MAX_SECRET_VALUE_BYTES} bytes",
                retryable=False,
            )
        try:
            return value.decode("utf-8", "strict").strip()
        except UnicodeDecodeError:
            raise Dns01Error(
                f"the exoscale Secret's {name!r} is not UTF-8", retryable=False
            ) from None

    return ExoscaleRecords(text(KEY), text(SECRET), text(API_ZONE, DEFAULT_API_ZONE))


class ExoscaleRecords:
    """One issuance's TXT records at Exoscale (not shared between threads: each operation
    sets its deadline on the client's session)."""

    def __init__(
        self,
        key: str,
        secret: str,
        api_zone: str = DEFAULT_API_ZONE,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        poll_interval: float = POLL_INTERVAL_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not _API_KEY.fullmatch(key):
            # Never the value itself: a secret pasted into the wrong key must not be echoed.
            raise Dns01Error(
                f"the exoscale Secret's {KEY!r} is not an API key (letters, digits, . _ -)",
                retryable=False,
            )
        if not secret:
            raise Dns01Error(f"the exoscale Secret's {SECRET!r} is empty", retryable=False)
        if not _API_ZONE.fullmatch(api_zone):
            raise Dns01Error(
                f"the exoscale Secret's {API_ZONE!r} is not a zone name such as {DEFAULT_API_ZONE}",
                retryable=False,
            )
        try:
            self._api: DnsApi = Client(key, secret, zone=api_zone)
        except TypeError as error:  # a zone the SDK does not know: its message lists them
            raise Dns01Error(
                f"exoscale {API_ZONE} {api_zone!r}: {error}", retryable=False
            ) from None
        # Mounted once (its connections are reused); each operation sets its deadline.
        self._adapter = _BoundedAdapter(monotonic)
        self._api.http_client.mount("https://", self._adapter)
        self._api.http_client.mount("http://", self._adapter)
        self.api_zone = api_zone
        self.timeout = timeout
        self.poll_interval = poll_interval
        self._sleep = sleep
        self._monotonic = monotonic

    def __repr__(self) -> str:
        return f"ExoscaleRecords(api_zone={self.api_zone!r})"

    def add_txt(self, zone: str, fqdn: str, value: str) -> None:
        what = f"adding a TXT value at {fqdn}"
        deadline = self._start()
        try:
            domain_id = self._domain_id(zone)
            name = relative_name(fqdn, zone)
            if self._ours(domain_id, name, value):
                return  # already there (a retried add): one record per value
            operation = self._api.create_dns_domain_record(
                domain_id=domain_id,
                name=name,
                type="TXT",
                content=value,
                ttl=CHALLENGE_TTL_SECONDS,
            )
            self._settle(operation, what, deadline)
        except Exception as error:
            raise _as_dns01_error(error, what, self.timeout) from None

    def remove_txt(self, zone: str, fqdn: str, value: str) -> None:
        what = f"removing a TXT value at {fqdn}"
        deadline = self._start()
        try:
            domain_id = self._domain_id(zone)
            for record_id in self._ours(domain_id, relative_name(fqdn, zone), value):
                try:
                    operation = self._api.delete_dns_domain_record(
                        domain_id=domain_id, record_id=record_id
                    )
                except sdk_errors.ExoscaleAPIClientException as error:
                    if _status(error) == 404:
                        continue  # gone already: what a removal wants
                    raise
                self._settle(operation, what, deadline)
        except Exception as error:
            raise _as_dns01_error(error, what, self.timeout) from None

    def _start(self) -> float:
        """This operation's deadline, for every request it makes."""
        self._adapter.deadline = self._monotonic() + self.timeout
        return self._adapter.deadline

    def _domain_id(self, zone: str) -> str:
        wanted = _ascii(zone)
        for domain in _items(self._api.list_dns_domains(), "dns-domains"):
            if _ascii(str(domain.get("unicode-name", ""))) == wanted:
                return _checked_id(domain.get("id"), "DNS domain")
        raise Dns01Error(
            f"exoscale: the zone {zone} is not a DNS domain of this Exoscale account",
            retryable=False,
        )

    def _ours(self, domain_id: str, name: str, value: str) -> list[str]:
        """The ids of the TXT records at `name` holding exactly `value`."""
        records = _items(
            self._api.list_dns_domain_records(domain_id=domain_id), "dns-domain-records"
        )
        return [
            _checked_id(record.get("id"), "DNS record")
            for record in records
            if record.get("type") == "TXT"
            and str(record.get("name", "")).lower() == name.lower()
            and _unquoted(str(record.get("content", ""))) == value
        ]

    def _settle(self, operation: Any, what: str, deadline: float) -> None:
        """Polls an asynchronous operation until it succeeded (returns) or failed (raises),
        at most until `deadline`."""
        while True:
            if not isinstance(operation, dict):
                raise Dns01Error(f"exoscale: {what}: the answer is not an operation")
            state = operation.get("state")
            if state == "success":
                return
            if state in ("failure", "timeout"):
                reason = str(operation.get("reason") or "unknown")[:40]
                message = str(operation.get("message") or "")[:200]
                ended = f"the operation ended in {state} ({reason}) {message}".strip()
                raise Dns01Error(
                    f"exoscale: {what}: {ended}",
                    retryable=state == "timeout" or reason in _RETRYABLE_REASONS,
                )
            if state != "pending":
                raise Dns01Error(f"exoscale: {what}: unknown operation state {str(state)[:40]!r}")
            operation_id = _checked_id(operation.get("id"), "operation")
            if self._monotonic() + self.poll_interval >= deadline:
                raise Dns01Error(
                    f"exoscale: {what}: the operation was still pending after {self.timeout:g} s"
                )
            self._sleep(self.poll_interval)
            operation = self._api.get_operation(id=operation_id)


def relative_name(fqdn: str, zone: str) -> str:
    """The record name Exoscale wants: relative to the zone, "" at its apex."""
    name, origin = fqdn.rstrip(".").lower(), zone.rstrip(".").lower()
    if name == origin:
        return ""
    if not name.endswith(f".{origin}"):
        raise Dns01Error(f"{fqdn} is not in the zone {zone}", retryable=False)
    return name[: -len(origin) - 1]


class _BoundedAdapter(HTTPAdapter):
    """Every request of one operation: a timeout no longer than what is left of it, and a
    body of at most MAX_RESPONSE_BYTES."""

    def __init__(self, monotonic: Callable[[], float]) -> None:
        super().__init__()
        self.deadline = monotonic()  # none left until an operation sets its own
        self._monotonic = monotonic

    def send(
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: dict[str, str] | None = None,
    ) -> Response:
        left = self.deadline - self._monotonic()
        if left <= 0:
            raise requests.Timeout("the Exoscale operation's time is up")
        response = super().send(
            request, stream=True, timeout=left, verify=verify, cert=cert, proxies=proxies
        )
        if not stream:
            try:
                body = response.raw.read(MAX_RESPONSE_BYTES + 1, decode_content=True)
            except BaseException:
                response.close()
                raise
            if len(body) > MAX_RESPONSE_BYTES:
                response.close()
                raise Dns01Error(f"exoscale: an answer longer than {MAX_RESPONSE_BYTES} bytes")
            # What requests' own Response.content does, with the bound.
            response._content = body
            response._content_consumed = True
        return response


def _as_dns01_error(error: Exception, what: str, timeout: float) -> Dns01Error:
    """certfleet's error for whatever the SDK or requests raised: Exoscale's status and
    `message`, never the request (its URL, its signed Authorization header)."""
    if isinstance(error, Dns01Error):
        return error
    if isinstance(error, requests.Timeout):
        return Dns01Error(f"exoscale: {what}: Exoscale did not answer within {timeout:g} s")
    if isinstance(error, requests.RequestException):
        return Dns01Error(f"exoscale: {what}: {type(error).__name__} reaching Exoscale")
    if isinstance(error, sdk_errors.ExoscaleAPIException):
        status = _status(error)
        detail = f"exoscale: {what}: HTTP {status}: {_message(error)}".rstrip(": ")
        if status == 429:
            return Dns01RateLimitedError(
                f"{detail} (rate limited)", _retry_after(getattr(error, "response", None))
            )
        # 401/403: the key, its secret or its IAM role; 400/404/409: the request or the zone.
        return Dns01Error(detail, retryable=status is None or status >= 500)
    if isinstance(error, ValueError):  # an answer that is not JSON
        return Dns01Error(f"exoscale: {what}: an answer that is not JSON")
    return Dns01Error(f"exoscale: {what} failed: {type(error).__name__}")


def _status(error: Exception) -> int | None:
    status = getattr(getattr(error, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def _message(error: Exception) -> str:
    """Exoscale's `{"message": ...}`, bounded."""
    response = getattr(error, "response", None)
    try:
        body = response.json() if response is not None else None
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])[:300]
    text = getattr(response, "text", "") or ""
    return str(text)[:300]


def _retry_after(response: Any) -> float | None:
    raw = str(getattr(response, "headers", {}).get("Retry-After", "") or "").strip()
    if not raw.isdigit():
        return None
    return min(float(raw), MAX_RETRY_AFTER_SECONDS)


def _items(answer: Any, key: str) -> list[dict[str, Any]]:
    items = answer.get(key) if isinstance(answer, dict) else None
    if items is None:
        return []
    if not isinstance(items, list):
        raise Dns01Error(f"exoscale: the answer's {key!r} is not a list")
    return [item for item in items if isinstance(item, dict)]


def _checked_id(value: object, what: str) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise Dns01Error(f"exoscale: the answer names a {what} without a valid id")
    return value


def _ascii(name: str) -> str:
    """A domain name comparable with the SOA walk's (ASCII, punycode), from Exoscale's
    `unicode-name`."""
    name = name.rstrip(".")
    try:
        return idna.encode(name, uts46=True).decode("ascii")
    except idna.IDNAError:
        return name.lower()


def _unquoted(content: str) -> str:
    content = content.strip()
    if len(content) >= 2 and content[0] == content[-1] == '"':
        return content[1:-1]
    return content
