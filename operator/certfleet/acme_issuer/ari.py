"""ACME Renewal Information (ARI, RFC 9773): when the CA would like a certificate renewed.

A CA uses ARI to spread renewals over time and to ask for early renewal (a revocation, an
incident). It is advisory: the core's `renewal_time` lets a window only bring renewal earlier,
and every failure here (a directory without `renewalInfo`, a CA that times out or answers
nonsense) means "no window": logged, and the operator's own rule applies until the next ask.

The request is an unauthenticated GET (RFC 9773 4.1): no account, no JWS. It goes through the
issuer's transport, so it has a deadline, the issuer's CA bundle and its metrics hook.
"""

from __future__ import annotations

import base64
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography import x509

from certfleet.acme_issuer.polling import parse_retry_after
from certfleet.acme_issuer.transport import DeadlineAdapter, Exchange, RequestHook
from certfleet.core.clock import utc_now

log = logging.getLogger(__name__)

# RFC 9773 4.3.2 suggests clamping Retry-After (e.g. to between one minute and one day); an
# hour as the floor keeps a fleet of thousands of certificates from polling the CA.
DEFAULT_MIN_ASK_AGAIN_SECONDS = 3600.0
DEFAULT_MAX_ASK_AGAIN_SECONDS = 86400.0
# Without a Retry-After, ask again after six hours (what certbot's acme does).
DEFAULT_ASK_AGAIN_SECONDS = 6 * 3600.0
DEFAULT_DEADLINE_SECONDS = 10.0

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
    None when the CA offers none or anything goes wrong (logged): ARI is advisory."""
    current = now or utc_now()
    try:
        leaf = x509.load_pem_x509_certificate(certificate_pem)
        cert_id = certificate_identifier(leaf)
    except ValueError as error:
        log.info("no ACME renewal information for this certificate: %s", error)
        return None
    if leaf.not_valid_after_utc <= current:
        return None  # RFC 9773 4.3: never asked for once the certificate has expired
    exchange = Exchange(f"renewal information of {cert_id}", deadline, timeout, on_request)
    # Per request, not session.verify: requests lets REQUESTS_CA_BUNDLE override the latter.
    verify: str | bool = ca_bundle or True
    try:
        with requests.Session() as session:
            adapter = DeadlineAdapter(exchange)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            session.headers["User-Agent"] = user_agent
            with exchange.step("directory"):
                base = _renewal_info_url(session, directory_url, verify)
            if base is None:
                log.debug("ACME CA %s offers no renewal information", directory_url)
                return None
            with exchange.step("renewal-info"):
                response = session.get(f"{base.rstrip('/')}/{cert_id}", verify=verify)
            if response.status_code != 200:
                raise ValueError(f"HTTP {response.status_code}")
            start, end, explanation = parse_suggested_window(response.json())
    # Anything at all (network, deadline, TLS, JSON, a bad window): ARI must never break a
    # reconciliation.
    except Exception as error:
        log.warning(
            "ACME renewal information for %s from %s unusable, ignored: %s",
            cert_id,
            directory_url,
            _describe(error),
        )
        return None
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
