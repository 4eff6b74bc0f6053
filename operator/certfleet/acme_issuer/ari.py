"""ACME Renewal Information (ARI, RFC 9773): when the CA would like a certificate renewed.

A CA uses ARI to spread renewals over time and to ask for early renewal (a revocation, an
incident). It is advisory: the core's `renewal_time` lets a window only bring renewal earlier,
and every failure here (a directory without `renewalInfo`, a CA that times out or answers
nonsense) means "no window": logged, and the operator's own rule applies until the next ask.

The request is an unauthenticated GET (RFC 9773 4.1): no account, no JWS. It goes through the
issuer's transport, so it has a deadline, the issuer's CA bundle and its metrics hook.
A `RenewalInfoSource` is one CA's, kept by its issuer: its sessions (a TLS handshake per
concurrent caller, not per certificate) and the directory's renewalInfo URL (fetched again
after an hour or a failure) serve every certificate of that CA.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography import x509

from certfleet.acme_issuer.polling import parse_retry_after
from certfleet.acme_issuer.transport import DeadlineAdapter, Exchange, IdlePool, RequestHook
from certfleet.core.clock import utc_now

log = logging.getLogger(__name__)

# RFC 9773 4.3.2 suggests clamping Retry-After (e.g. to between one minute and one day); an
# hour as the floor keeps a fleet of thousands of certificates from polling the CA.
DEFAULT_MIN_ASK_AGAIN_SECONDS = 3600.0
DEFAULT_MAX_ASK_AGAIN_SECONDS = 86400.0
# Without a Retry-After, ask again after six hours (what certbot's acme does).
DEFAULT_ASK_AGAIN_SECONDS = 6 * 3600.0
DEFAULT_DEADLINE_SECONDS = 10.0
# How long the directory's renewalInfo URL (or its absence) is trusted: a CA that starts to
# offer ARI, or moves it, is noticed within this.
DIRECTORY_MAX_AGE_SECONDS = 3600.0

# RFC 3339 date-time; fromisoformat alone would also take a bare date or a naive time.
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)


@dataclass(frozen=True)
class RenewalInfo:
    """The CA's suggested window (UTC, start < end) and when to ask again."""

    start: datetime
    end: datetime
    ask_again_seconds: float
    explanation_url: str | None = None

    @property
    def window(self) -> tuple[datetime, datetime]:
        return self.start, self.end


def certificate_identifier(leaf: x509.Certificate) -> str:
    """RFC 9773 4.1: base64url(AKI keyIdentifier) "." base64url(DER serial bytes), unpadded.

    Raises ValueError when the certificate has no Authority Key Identifier keyIdentifier
    (then it has no ARI identifier).
    """
    try:
        aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        raise ValueError("the certificate has no Authority Key Identifier") from None
    if not aki.key_identifier:
        raise ValueError("the certificate's Authority Key Identifier has no keyIdentifier")
    serial = leaf.serial_number
    # The content octets of the DER INTEGER: minimal two's complement, so a serial whose top
    # bit is set gets a leading zero byte.
    length = (serial if serial >= 0 else ~serial).bit_length() // 8 + 1
    serial_bytes = serial.to_bytes(length, "big", signed=True)
    return f"{_b64url(aki.key_identifier)}.{_b64url(serial_bytes)}"


def parse_suggested_window(document: Any) -> tuple[datetime, datetime, str | None]:
    """(start, end, explanationURL) of a renewalInfo response body (parsed JSON); ValueError
    unless it holds a suggestedWindow with RFC 3339 start < end."""
    if not isinstance(document, dict):
        raise ValueError("the renewalInfo response is not a JSON object")
    window = document.get("suggestedWindow")
    if not isinstance(window, dict):
        raise ValueError("the renewalInfo response has no suggestedWindow object")
    start = _rfc3339(window.get("start"), "start")
    end = _rfc3339(window.get("end"), "end")
    if not start < end:
        # RFC 9773 4.2: such a window is invalid.
        raise ValueError(f"the suggested window ends ({end}) at or before its start ({start})")
    explanation = document.get("explanationURL")
    return start, end, explanation if isinstance(explanation, str) else None


def ask_again_seconds(
    retry_after: str | None,
    *,
    minimum: float = DEFAULT_MIN_ASK_AGAIN_SECONDS,
    maximum: float = DEFAULT_MAX_ASK_AGAIN_SECONDS,
    now: datetime | None = None,
) -> float:
    """Seconds until the renewalInfo may be fetched again: the Retry-After header (seconds or
    an HTTP date; absent or unreadable: six hours), clamped into [minimum, maximum]."""
    if minimum < 0 or maximum < minimum:
        raise ValueError(f"need 0 <= minimum <= maximum, got {minimum} and {maximum}")
    asked = parse_retry_after(retry_after, now)
    wanted = DEFAULT_ASK_AGAIN_SECONDS if asked is None else asked
    return min(max(wanted, minimum), maximum)


def fetch_renewal_info(
    directory_url: str,
    certificate_pem: bytes,
    *,
    ca_bundle: str | None = None,
    user_agent: str = "certfleet",
    timeout: float = DEFAULT_DEADLINE_SECONDS,
    deadline: float = DEFAULT_DEADLINE_SECONDS,
    on_request: RequestHook | None = None,
    min_ask_again_seconds: float = DEFAULT_MIN_ASK_AGAIN_SECONDS,
    max_ask_again_seconds: float = DEFAULT_MAX_ASK_AGAIN_SECONDS,
    now: datetime | None = None,
) -> RenewalInfo | None:
    """The CA's renewal information for the leaf of `certificate_pem` (a fullchain is fine);
    None when the CA offers none or anything goes wrong (logged): ARI is advisory. One
    question, its own connection; `RenewalInfoSource` keeps them for many."""
    source = RenewalInfoSource(
        directory_url,
        ca_bundle=ca_bundle,
        user_agent=user_agent,
        timeout=timeout,
        on_request=on_request,
    )
    try:
        return source.fetch(
            certificate_pem,
            deadline=deadline,
            min_ask_again_seconds=min_ask_again_seconds,
            max_ask_again_seconds=max_ask_again_seconds,
            now=now,
        )
    finally:
        source.close()


class _AriSession:
    """A requests Session with the deadline adapter mounted; one caller at a time."""

    def __init__(self, exchange: Exchange, user_agent: str) -> None:
        self.session = requests.Session()
        self.adapter = DeadlineAdapter(exchange)
        self.session.mount("https://", self.adapter)
        self.session.mount("http://", self.adapter)
        self.session.headers["User-Agent"] = user_agent

    def close(self) -> None:
        self.session.close()


class RenewalInfoSource:
    """The renewal information of one CA's certificates. Thread-safe: each `fetch` has a
    session to itself (an idle one, else a new one); the renewalInfo URL is shared."""

    def __init__(
        self,
        directory_url: str,
        *,
        ca_bundle: str | None = None,
        user_agent: str = "certfleet",
        timeout: float = DEFAULT_DEADLINE_SECONDS,
        on_request: RequestHook | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory_url = directory_url
        self._ca_bundle = ca_bundle
        self._user_agent = user_agent
        self._timeout = timeout
        self._on_request = on_request
        self._monotonic = monotonic
        self._sessions: IdlePool[_AriSession] = IdlePool(monotonic=monotonic)
        self._lock = threading.Lock()
        # (monotonic time fetched, the renewalInfo URL or None: the CA offers none)
        self._base: tuple[float, str | None] | None = None

    def close(self) -> None:
        self._sessions.close()

    def fetch(
        self,
        certificate_pem: bytes,
        *,
        deadline: float = DEFAULT_DEADLINE_SECONDS,
        min_ask_again_seconds: float = DEFAULT_MIN_ASK_AGAIN_SECONDS,
        max_ask_again_seconds: float = DEFAULT_MAX_ASK_AGAIN_SECONDS,
        now: datetime | None = None,
    ) -> RenewalInfo | None:
        """As `fetch_renewal_info`, through this CA's kept sessions."""
        current = now or utc_now()
        try:
            leaf = x509.load_pem_x509_certificate(certificate_pem)
            cert_id = certificate_identifier(leaf)
        except ValueError as error:
            log.info("no ACME renewal information for this certificate: %s", error)
            return None
        if leaf.not_valid_after_utc <= current:
            return None  # RFC 9773 4.3: never asked for once the certificate has expired
        exchange = Exchange(
            f"renewal information of {cert_id}", deadline, self._timeout, self._on_request
        )
        # Per request, not session.verify: requests lets REQUESTS_CA_BUNDLE override the
        # latter.
        verify: str | bool = self._ca_bundle or True
        held = self._sessions.take()
        if held is None:
            held = _AriSession(exchange, self._user_agent)
        held.adapter.exchange = exchange
        try:
            base = self._renewal_info_base(held.session, exchange, verify)
            if base is None:
                log.debug("ACME CA %s offers no renewal information", self.directory_url)
                self._sessions.give(held)
                return None
            with exchange.step("renewal-info"):
                response = held.session.get(f"{base.rstrip('/')}/{cert_id}", verify=verify)
            if response.status_code != 200:
                raise ValueError(f"HTTP {response.status_code}")
            start, end, explanation = parse_suggested_window(response.json())
        # Anything at all (network, deadline, TLS, JSON, a bad window): ARI must never break a
        # reconciliation. The session is dropped and the directory asked again next time.
        except Exception as error:
            held.close()
            with self._lock:
                self._base = None
            log.warning(
                "ACME renewal information for %s from %s unusable, ignored: %s",
                cert_id,
                self.directory_url,
                _describe(error),
            )
            return None
        self._sessions.give(held)
        info = RenewalInfo(
            start,
            end,
            ask_again_seconds(
                response.headers.get("Retry-After"),
                minimum=min_ask_again_seconds,
                maximum=max_ask_again_seconds,
                now=current,
            ),
            explanation,
        )
        log.debug(
            "ACME renewal information for %s: window %s to %s, ask again in %.0f s",
            cert_id,
            start.isoformat(),
            end.isoformat(),
            info.ask_again_seconds,
        )
        return info

    def _renewal_info_base(
        self, session: requests.Session, exchange: Exchange, verify: str | bool
    ) -> str | None:
        """The directory's renewalInfo URL, as fetched within the last hour, else now."""
        with self._lock:
            known = self._base
        if known is not None and self._monotonic() - known[0] <= DIRECTORY_MAX_AGE_SECONDS:
            return known[1]
        with exchange.step("directory"):
            base = _renewal_info_url(session, self.directory_url, verify)
        with self._lock:
            self._base = (self._monotonic(), base)
        return base


def _renewal_info_url(
    session: requests.Session, directory_url: str, verify: str | bool
) -> str | None:
    response = session.get(directory_url, verify=verify)
    if response.status_code != 200:
        raise ValueError(f"the directory answered HTTP {response.status_code}")
    directory = response.json()
    if not isinstance(directory, dict):
        raise ValueError("the directory is not a JSON object")
    url = directory.get("renewalInfo")
    if url is None:
        return None
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"the directory's renewalInfo is not a URL: {str(url)[:100]!r}")
    return str(url)


def _rfc3339(value: Any, what: str) -> datetime:
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError(f"the suggested window's {what} is not an RFC 3339 time: {value!r:.60}")
    return datetime.fromisoformat(value.upper()).astimezone(UTC)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _describe(error: Exception) -> str:
    text = str(error) or type(error).__name__
    return text[:300]
