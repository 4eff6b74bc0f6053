"""TXT records through dns-lexicon's providers (Cloudflare, DigitalOcean, Linode `linode4`,
Vultr, Exoscale, Route 53, PowerDNS and every other provider lexicon has), with the
provider's options from a Secret.

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
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from lexicon._private.discovery import find_providers, load_provider_module
from lexicon.config import ConfigResolver
from lexicon.interfaces import Provider

from certfleet.acme_issuer.dns01.records import CHALLENGE_TTL_SECONDS
from certfleet.acme_issuer.errors import Dns01Error

_OPTION = re.compile(r"[a-z][a-z0-9_]{0,63}")
MAX_OPTION_BYTES = 8192
DEFAULT_TIMEOUT_SECONDS = 30.0
# lexicon's providers call requests without a timeout: each call runs here, bounded.
_calls = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="lexicon")
T = TypeVar("T")


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
        def call() -> T:
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

        future = _calls.submit(call)
        try:
            return future.result(timeout=self.timeout)
        except concurrent.futures.TimeoutError:
            raise Dns01Error(
                f"{self.provider}: {what} took longer than {self.timeout:g} s"
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
