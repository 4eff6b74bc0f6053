"""TXT records through dns-lexicon's providers (Cloudflare, DigitalOcean, Linode `linode4`,
Vultr, Route 53, PowerDNS and every other provider lexicon has), with the provider's options
from a Secret. Not Exoscale: lexicon's provider speaks its deprecated DNS API v1, so
`exoscale` goes to `exoscale.ExoscaleRecords` (API v2) instead.

The zone comes from certfleet's own SOA lookup (`lookup.DnsLookup.zone_of`), so the provider
is built directly instead of through `lexicon.client.Client`, which would guess the zone with
tldextract: that needs the public suffix list from the internet (or a stale snapshot), and
guesses wrong for delegated sub-zones.

lexicon's `create_record` adds a value on most providers but replaces the set on some; every
add is checked afterwards: a value that was there before and is gone now is an error that
says so, rather than a silently broken neighbour.
"""

from __future__ import annotations

import concurrent.futures
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import requests
from lexicon._private.discovery import find_providers, load_provider_module
from lexicon.config import ConfigResolver
from lexicon.interfaces import Provider

from certfleet.acme_issuer.dns01.records import CHALLENGE_TTL_SECONDS
from certfleet.acme_issuer.errors import Dns01Error

_OPTION = re.compile(r"[a-z][a-z0-9_]{0,63}")
MAX_OPTION_BYTES = 8192
DEFAULT_TIMEOUT_SECONDS = 30.0
# The caller waits this much longer than the provider's calls may take: normally a call's
# own timeout ends it first, with the provider's thread free again.
_GRACE_SECONDS = 2.0
# Each provider operation runs on a thread of its own here, bounded twice: the caller waits
# at most the timeout (plus grace), and every HTTP call the provider makes gets a timeout.
_calls = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="lexicon")
T = TypeVar("T")

# lexicon's providers call `requests` (module functions or a Session of their own) without a
# timeout, and lexicon offers no hook for one: a provider that never answers would keep its
# thread forever. Every requests call goes through `Session.send`, so that is wrapped once:
# on a thread running a provider operation (`_deadline.at` set), a call without a timeout
# gets what is left of the operation's time, and a longer one is cut to it. Other threads'
# calls (the ACME client's, which has its own timeouts) pass through unchanged.
_deadline = threading.local()
_original_send = requests.Session.send


def bounded_timeout(given: object, deadline: float | None, now: float) -> object:
    """The timeout a provider's HTTP call gets: its own (`given`), at most what is left
    until `deadline` (a `time.monotonic()` value; None: no provider operation)."""
    if deadline is None:
        return given
    left = deadline - now
    if left <= 0:
        raise requests.Timeout("the DNS provider operation's time is up")
    if given is None:
        return left
    if isinstance(given, int | float) and not isinstance(given, bool):
        return min(float(given), left)
    if isinstance(given, tuple) and len(given) == 2:
        return tuple(left if part is None else min(float(part), left) for part in given)
    return left


def _send_within_deadline(
    self: requests.Session, request: requests.PreparedRequest, **kwargs: Any
) -> requests.Response:
    deadline = getattr(_deadline, "at", None)
    if deadline is not None:
        kwargs["timeout"] = bounded_timeout(kwargs.get("timeout"), deadline, time.monotonic())
    return _original_send(self, request, **kwargs)


requests.Session.send = _send_within_deadline  # type: ignore[method-assign]


def lexicon_providers() -> frozenset[str]:
    """The providers lexicon has whose extra dependencies are installed."""
    return frozenset(name for name, usable in find_providers().items() if usable)


def provider_options(data: Mapping[str, bytes]) -> dict[str, str]:
    """A Secret's keys as lexicon options (`auth_token`, `auth_access_key`, ...): validated and
    bounded, since they come from a user."""
    options: dict[str, str] = {}
    for key, value in data.items():
        if not _OPTION.fullmatch(key):
            raise Dns01Error(
                f"Secret key {key[:64]!r} is not a lexicon option name (lower case, digits, _)",
                retryable=False,
            )
        if len(value) > MAX_OPTION_BYTES:
            raise Dns01Error(f"Secret key {key!r} holds more than {MAX_OPTION_BYTES} bytes")
        options[key] = value.decode("utf-8", "strict").strip()
    return options


class LexiconRecords:
    def __init__(
        self,
        provider: str,
        options: Mapping[str, str],
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        providers: frozenset[str] | None = None,
    ) -> None:
        known = providers if providers is not None else lexicon_providers()
        if provider not in known:
            raise Dns01Error(
                f"DNS provider {provider[:64]!r} is not one lexicon offers here", retryable=False
            )
        self.provider = provider
        self._options = dict(options)
        self.timeout = timeout

    def add_txt(self, zone: str, fqdn: str, value: str) -> None:
        def add(client: Provider) -> None:
            before = _values(client, fqdn)
            if value in before:
                return
            client.create_record("TXT", fqdn, value)
            after = _values(client, fqdn)
            if value not in after:
                raise Dns01Error(f"{self.provider}: the TXT value at {fqdn} did not appear")
            lost = before - after
            if lost:
                raise Dns01Error(
                    f"{self.provider}: creating a TXT value at {fqdn} replaced "
                    f"{len(lost)} other value(s) there: this provider cannot hold two "
                    "challenges at one name",
                    retryable=False,
                )

        self._run(zone, f"adding a TXT value at {fqdn}", add)

    def remove_txt(self, zone: str, fqdn: str, value: str) -> None:
        def remove(client: Provider) -> None:
            if value in _values(client, fqdn):
                client.delete_record(None, "TXT", fqdn, value)

        self._run(zone, f"removing a TXT value at {fqdn}", remove)

    def _run(self, zone: str, what: str, operation: Callable[[Provider], T]) -> T:
        deadline = time.monotonic() + self.timeout  # from now: queueing counts too

        def call() -> T:
            _deadline.at = deadline
            try:
                config = ConfigResolver().with_dict(  # type: ignore[no-untyped-call]
                    {
                        "provider_name": self.provider,
                        "domain": zone,
                        "ttl": CHALLENGE_TTL_SECONDS,
                        self.provider: dict(self._options),
                    }
                )
                client: Provider = load_provider_module(self.provider).Provider(config)
                client.authenticate()
                try:
                    return operation(client)
                finally:
                    client.cleanup()
            finally:
                _deadline.at = None

        future = _calls.submit(call)
        try:
            return future.result(timeout=self.timeout + _GRACE_SECONDS)
        except (concurrent.futures.TimeoutError, requests.Timeout):
            raise Dns01Error(
                f"{self.provider}: {what}: the provider did not answer within {self.timeout:g} s"
            ) from None
        except Dns01Error:
            raise
        except Exception as error:
            raise Dns01Error(f"{self.provider}: {what} failed: {_described(error)}") from None


def _values(client: Provider, fqdn: str) -> set[str]:
    records: list[dict[str, Any]] = client.list_records("TXT", fqdn)
    wanted = fqdn.rstrip(".").lower()
    return {
        str(record.get("content", "")).strip('"')
        for record in records
        if str(record.get("name", "")).rstrip(".").lower() == wanted
    }


def _described(error: Exception) -> str:
    """The provider's answer without anything of the request: requests' HTTPError names the
    URL (some providers put credentials in the query), so only the status and a bounded body."""
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    if status is not None:
        body = (getattr(response, "text", "") or "")[:300]
        return f"HTTP {status}: {body}".strip()
    text = str(error) or type(error).__name__
    return text[:300]
