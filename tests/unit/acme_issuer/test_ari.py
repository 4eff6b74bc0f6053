"""ACME Renewal Information: the identifier, the window, Retry-After, and a CA on a local
socket that answers well, badly or not at all (each bad answer means "no window"); last, the
operator's per-certificate memory of it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from acme.messages import IDENTIFIER_FQDN, Identifier
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certfleet.acme_issuer import AcmeIssuer, ChallengeStore, InMemoryAccountStore
from certfleet.acme_issuer.ari import (
    DEFAULT_ASK_AGAIN_SECONDS,
    RenewalInfoSource,
    ask_again_seconds,
    certificate_identifier,
    fetch_renewal_info,
    parse_suggested_window,
)
from certfleet.acme_issuer.issuer import _NewOrderReplacing
from certfleet.api.spec import parse_certificate_spec
from certfleet.controller.renewal_windows import AriWindows

KEY = ec.generate_private_key(ec.SECP256R1())
# RFC 9773 4.1's example: this keyIdentifier and serial 0x87654321.
RFC_AKI = bytes.fromhex("69885B6B87464041E1B37B847BA0AE2CDE01C8D4")


def certificate(
    serial: int = 0x87654321,
    aki: bytes | None = RFC_AKI,
    not_after: datetime | None = None,
) -> x509.Certificate:
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "www.example.com")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(KEY.public_key())
        .serial_number(serial)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(not_after or now + timedelta(days=89))
    )
    if aki is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier(aki, None, None), critical=False
        )
    return builder.sign(KEY, hashes.SHA256())


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


# --- the identifier --------------------------------------------------------------------------


def test_the_identifier_of_rfc_9773s_example() -> None:
    assert certificate_identifier(certificate()) == "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"


@pytest.mark.parametrize(
    ("serial", "encoded"),
    [
        (0x7F, "fw"),  # top bit clear: one byte
        (0x80, "AIA"),  # top bit set: a zero byte keeps the INTEGER positive
        (0x0102030405, "AQIDBAU"),
    ],
)
def test_the_serial_is_its_der_integer_bytes(serial: int, encoded: str) -> None:
    assert certificate_identifier(certificate(serial)).split(".")[1] == encoded


def test_a_certificate_without_authority_key_identifier_has_no_identifier() -> None:
    with pytest.raises(ValueError, match="Authority Key Identifier"):
        certificate_identifier(certificate(aki=None))


# --- the window ------------------------------------------------------------------------------


def test_a_window_is_parsed_into_utc() -> None:
    start, end, explanation = parse_suggested_window(
        {
            "suggestedWindow": {
                "start": "2025-01-02T04:00:00Z",
                "end": "2025-01-03T06:00:00+02:00",
            },
            "explanationURL": "https://ca.example/incident",
        }
    )
    assert start == datetime(2025, 1, 2, 4, tzinfo=UTC)
    assert end == datetime(2025, 1, 3, 4, tzinfo=UTC)
    assert end.tzinfo is UTC
    assert explanation == "https://ca.example/incident"


@pytest.mark.parametrize(
    "document",
    [
        None,
        [],
        {},
        {"suggestedWindow": "soon"},
        {"suggestedWindow": {"start": "2025-01-02T04:00:00Z"}},
        {"suggestedWindow": {"start": "2025-01-03T04:00:00Z", "end": "2025-01-02T04:00:00Z"}},
        {"suggestedWindow": {"start": "2025-01-02T04:00:00Z", "end": "2025-01-02T04:00:00Z"}},
        {"suggestedWindow": {"start": "2025-01-02", "end": "2025-01-03"}},
        {"suggestedWindow": {"start": "2025-01-02T04:00:00", "end": "2025-01-03T04:00:00"}},
        {"suggestedWindow": {"start": 1735790400, "end": 1735876800}},
        {"suggestedWindow": {"start": "2025-13-02T04:00:00Z", "end": "2025-14-02T04:00:00Z"}},
    ],
)
def test_a_bad_window_is_refused(document: object) -> None:
    with pytest.raises(ValueError):
        parse_suggested_window(document)


# --- Retry-After -----------------------------------------------------------------------------


def test_retry_after_is_honoured_within_one_hour_and_one_day() -> None:
    assert ask_again_seconds("21600") == 21600
    assert ask_again_seconds(None) == DEFAULT_ASK_AGAIN_SECONDS == 6 * 3600
    assert ask_again_seconds("not a date") == 6 * 3600
    assert ask_again_seconds("60") == 3600
    assert ask_again_seconds("0") == 3600
    assert ask_again_seconds(str(10 * 86400)) == 86400
    now = datetime(2030, 6, 1, 12, tzinfo=UTC)
    in_two_hours = format_datetime(now + timedelta(hours=2), usegmt=True)
    assert ask_again_seconds(in_two_hours, now=now) == 7200


def test_tests_may_ask_again_sooner() -> None:
    assert ask_again_seconds("21600", minimum=0.5, maximum=2) == 2
    assert ask_again_seconds("0", minimum=0.5, maximum=2) == 0.5
    with pytest.raises(ValueError):
        ask_again_seconds("1", minimum=2, maximum=1)


# --- a CA on a local socket ------------------------------------------------------------------


@dataclass
class Answer:
    status: int = 200
    body: object = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class FakeCA:
    url: str
    answers: dict[str, Answer]
    requests: list[tuple[str, str]] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)  # the client's port of each request

    @property
    def directory_url(self) -> str:
        return f"{self.url}/dir"

    def offer(self, window: object, **headers: str) -> None:
        self.answers["/dir"] = Answer(body={"renewalInfo": f"{self.url}/ari/"})
        self.answers[f"/ari/{certificate_identifier(certificate())}"] = Answer(
            body=window, headers=headers
        )


@pytest.fixture
def ca() -> Iterator[FakeCA]:
    answers: dict[str, Answer] = {}
    seen: list[tuple[str, str]] = []
    ports: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keeps the connection open, as a CA does

        def do_GET(self) -> None:
            seen.append((self.path, self.headers.get("User-Agent", "")))
            ports.append(self.client_address[1])
            answer = answers.get(self.path, Answer(404, {"type": "not found"}))
            time.sleep(answer.delay)
            body = answer.body if isinstance(answer.body, bytes) else json.dumps(answer.body)
            data = body if isinstance(body, bytes) else body.encode()
            self.send_response(answer.status)
            self.send_header("Content-Type", "application/json")
            for name, value in answer.headers.items():
                self.send_header(name.replace("_", "-"), value)
            self.send_header("Content-Length", str(len(data)))
            try:
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (the deadline test)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield FakeCA(f"http://127.0.0.1:{server.server_address[1]}", answers, seen, ports)
    finally:
        server.shutdown()
        server.server_close()


WINDOW = {"suggestedWindow": {"start": "2031-01-02T04:00:00Z", "end": "2031-01-03T04:00:00Z"}}


def test_the_window_is_fetched_with_a_plain_get_and_retry_after_bounded(ca: FakeCA) -> None:
    ca.offer(WINDOW, Retry_After="21600")
    operations: list[str] = []
    info = fetch_renewal_info(
        ca.directory_url,
        pem(certificate()),
        user_agent="certfleet-test",
        on_request=lambda _seconds, operation: operations.append(operation),
        min_ask_again_seconds=1,
        max_ask_again_seconds=3,
    )
    assert info is not None
    assert info.window == (datetime(2031, 1, 2, 4, tzinfo=UTC), datetime(2031, 1, 3, 4, tzinfo=UTC))
    assert info.ask_again_seconds == 3
    assert [path for path, _ in ca.requests] == ["/dir", "/ari/aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"]
    assert {agent for _, agent in ca.requests} == {"certfleet-test"}
    assert operations == ["directory", "renewal-info"]


def test_the_issuer_fetches_through_its_own_settings(ca: FakeCA) -> None:
    ca.offer(WINDOW)
    issuer = AcmeIssuer(ca.directory_url, InMemoryAccountStore(), ChallengeStore())
    info = issuer.renewal_info(pem(certificate()))
    assert info is not None and info.ask_again_seconds == DEFAULT_ASK_AGAIN_SECONDS
    assert ca.requests[0][1].startswith("certfleet/")


def test_one_issuer_asks_its_directory_once_over_one_kept_connection(ca: FakeCA) -> None:
    ca.offer(WINDOW)
    issuer = AcmeIssuer(ca.directory_url, InMemoryAccountStore(), ChallengeStore())
    for _ in range(3):
        assert issuer.renewal_info(pem(certificate())) is not None
    ari_path = f"/ari/{certificate_identifier(certificate())}"
    assert [path for path, _ in ca.requests] == ["/dir", ari_path, ari_path, ari_path]
    assert len(set(ca.ports)) == 1, "a new connection (a TLS handshake) per certificate"
    issuer.close()


def test_the_directory_is_asked_again_after_an_hour_or_a_failure(ca: FakeCA) -> None:
    ca.offer(WINDOW)
    clock = FakeMonotonic()
    source = RenewalInfoSource(ca.directory_url, monotonic=clock)
    leaf = pem(certificate())
    assert source.fetch(leaf) is not None
    clock.now += 3599
    assert source.fetch(leaf) is not None
    assert [path for path, _ in ca.requests].count("/dir") == 1
    clock.now += 2  # over an hour since the directory was read
    assert source.fetch(leaf) is not None
    assert [path for path, _ in ca.requests].count("/dir") == 2

    ari_path = f"/ari/{certificate_identifier(certificate())}"
    ca.answers[ari_path] = Answer(500, {})
    assert source.fetch(leaf) is None
    ca.offer(WINDOW)
    assert source.fetch(leaf) is not None
    assert [path for path, _ in ca.requests].count("/dir") == 3, "asked again after a failure"
    source.close()


def test_a_ca_without_renewal_info_is_not_asked_per_certificate(ca: FakeCA) -> None:
    ca.answers["/dir"] = Answer(body={"newOrder": f"{ca.url}/new-order"})
    source = RenewalInfoSource(ca.directory_url)
    for _ in range(3):
        assert source.fetch(pem(certificate())) is None
    assert [path for path, _ in ca.requests] == ["/dir"]


def test_callers_on_many_threads_each_get_the_window(ca: FakeCA) -> None:
    ca.offer(WINDOW)
    source = RenewalInfoSource(ca.directory_url)
    leaf = pem(certificate())
    with ThreadPoolExecutor(8) as pool:
        windows = list(pool.map(lambda _: source.fetch(leaf), range(40)))
    assert {info.window if info is not None else None for info in windows} == {
        (datetime(2031, 1, 2, 4, tzinfo=UTC), datetime(2031, 1, 3, 4, tzinfo=UTC))
    }
    # At most one connection per thread, and far fewer than one per certificate.
    assert len(set(ca.ports)) <= 8
    source.close()


def test_a_directory_without_renewal_info_means_no_window(ca: FakeCA) -> None:
    ca.answers["/dir"] = Answer(body={"newOrder": f"{ca.url}/new-order"})  # pebble 2.4
    assert fetch_renewal_info(ca.directory_url, pem(certificate())) is None
    assert [path for path, _ in ca.requests] == ["/dir"]


@pytest.mark.parametrize(
    "answer",
    [
        Answer(404, {"type": "urn:ietf:params:acme:error:malformed"}),
        Answer(500, WINDOW),
        Answer(body=b"{not json"),
        Answer(
            body={
                "suggestedWindow": {"start": "2031-01-03T04:00:00Z", "end": "2031-01-02T04:00:00Z"}
            }
        ),
        Answer(body={"suggestedWindow": {"start": "tomorrow", "end": "later"}}),
        Answer(body=WINDOW, delay=1.0),  # beyond the deadline
    ],
)
def test_a_bad_answer_means_no_window(ca: FakeCA, answer: Answer) -> None:
    ca.offer(None)
    ca.answers[f"/ari/{certificate_identifier(certificate())}"] = answer
    started = time.monotonic()
    assert fetch_renewal_info(ca.directory_url, pem(certificate()), deadline=0.3) is None
    assert time.monotonic() - started < 0.9


@pytest.mark.parametrize("renewal_info", [42, "ftp://ca.example/ari", "/relative"])
def test_a_directory_with_a_bad_renewal_info_url_means_no_window(
    ca: FakeCA, renewal_info: object
) -> None:
    ca.answers["/dir"] = Answer(body={"renewalInfo": renewal_info})
    assert fetch_renewal_info(ca.directory_url, pem(certificate())) is None


def test_an_unreachable_ca_means_no_window() -> None:
    assert fetch_renewal_info("http://127.0.0.1:9/dir", pem(certificate()), deadline=2) is None


def test_nothing_is_asked_for_an_expired_or_unidentifiable_certificate(ca: FakeCA) -> None:
    ca.offer(WINDOW)
    expired = certificate(not_after=datetime.now(UTC) - timedelta(seconds=1))
    assert fetch_renewal_info(ca.directory_url, pem(expired)) is None
    assert fetch_renewal_info(ca.directory_url, pem(certificate(aki=None))) is None
    assert fetch_renewal_info(ca.directory_url, b"not a certificate") is None
    assert ca.requests == []


def test_a_replacement_order_names_the_certificate_it_replaces() -> None:
    # The body the library signs; josepy drops the unset fields.
    order = _NewOrderReplacing(
        identifiers=[Identifier(typ=IDENTIFIER_FQDN, value="www.example.com")],
        replaces=certificate_identifier(certificate()),
    )
    assert json.loads(order.json_dumps()) == {
        "identifiers": [{"type": "dns", "value": "www.example.com"}],
        "replaces": "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE",
    }


def test_the_operator_asks_again_only_after_the_bounded_retry_after(ca: FakeCA) -> None:
    clock = FakeMonotonic()
    windows = AriWindows(
        # The spec needs an https:// directory; the fake CA speaks plain HTTP.
        lambda _directory: AcmeIssuer(ca.directory_url, InMemoryAccountStore(), ChallengeStore()),
        min_ask_again_seconds=0.2,
        max_ask_again_seconds=0.3,
        monotonic=clock,
    )
    spec = parse_certificate_spec(
        {
            "domain": "www.example.com",
            "cloudhost": "aws",
            "buildIdentifier": "build-1",
            "generationMethod": "AUTOMATIC",
            "acme": {"server": "https://ca.example/dir"},
        }
    )
    ca.offer(WINDOW, Retry_After="21600")  # six hours, bounded to 0.3 s here
    leaf = pem(certificate())
    window = windows.window(spec, leaf)
    assert window == (datetime(2031, 1, 2, 4, tzinfo=UTC), datetime(2031, 1, 3, 4, tzinfo=UTC))
    assert windows.window(spec, leaf) == window
    assert len(ca.requests) == 2, "asked again before Retry-After"

    clock.now += 0.35
    ca.answers[f"/ari/{certificate_identifier(certificate())}"] = Answer(500, {})
    assert windows.window(spec, leaf) is None  # a failure: no window...
    assert windows.window(spec, leaf) is None
    assert len(ca.requests) == 4  # ... and not asked again before the minimum


def test_a_spec_with_an_unusable_server_has_no_window() -> None:
    windows = AriWindows(lambda _directory: pytest.fail("no CA may be asked"))
    spec = parse_certificate_spec(
        {
            "domain": "www.example.com",
            "cloudhost": "aws",
            "buildIdentifier": "build-1",
            "generationMethod": "AUTOMATIC",
            "acme": {"server": "ftp://ca.example/dir"},
        }
    )
    assert windows.window(spec, pem(certificate())) is None


@dataclass
class FakeMonotonic:
    """The renewal windows' clock, moved by the test instead of slept through."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_certificate_from_a_fallback_server_gets_that_server_s_window(ca: FakeCA) -> None:
    asked: list[str] = []

    def issuer_for(directory: str) -> AcmeIssuer:
        asked.append(directory)
        # The first server knows no such certificate (404), the fallback (the fake CA) does.
        first = directory == "https://first.example/dir"
        url = f"{ca.url}/other-dir" if first else ca.directory_url
        return AcmeIssuer(url, InMemoryAccountStore(), ChallengeStore())

    ca.answers["/other-dir"] = Answer(body={"renewalInfo": f"{ca.url}/unknown/"})
    ca.offer(WINDOW)
    spec = parse_certificate_spec(
        {
            "domain": "www.example.com",
            "cloudhost": "aws",
            "buildIdentifier": "build-1",
            "generationMethod": "AUTOMATIC",
            "acme": {
                "server": "https://first.example/dir",
                "fallbackServers": ["https://second.example/dir"],
            },
        }
    )
    windows = AriWindows(issuer_for)
    window = windows.window(spec, pem(certificate()))
    assert window == (datetime(2031, 1, 2, 4, tzinfo=UTC), datetime(2031, 1, 3, 4, tzinfo=UTC))
    assert asked == ["https://first.example/dir", "https://second.example/dir"]
    paths = [path for path, _ in ca.requests]
    assert paths[:2] == ["/other-dir", f"/unknown/{certificate_identifier(certificate())}"]
