"""The per-issuance transport: deadline, hook and last response, on a real local socket."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certfleet.acme_issuer import AcmeDeadlineExceededError, ChallengeStore, Http01Server
from certfleet.acme_issuer.ari import fetch_renewal_info
from certfleet.acme_issuer.errors import AcmeResponseTooLargeError
from certfleet.acme_issuer.transport import MAX_BODY_BYTES, DeadlineAdapter, Exchange, IdlePool


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with Http01Server(ChallengeStore(), "127.0.0.1", 0) as server:
        yield f"http://127.0.0.1:{server.port}/"


def _session(exchange: Exchange, max_body_bytes: int = MAX_BODY_BYTES) -> requests.Session:
    session = requests.Session()
    session.mount("http://", DeadlineAdapter(exchange, max_body_bytes))
    return session


def test_requests_report_their_duration_and_operation_and_keep_the_last_reply(url: str) -> None:
    seen: list[tuple[float, str]] = []
    exchange = Exchange("x.example", 10, 5, lambda s, op: seen.append((s, op)))
    exchange.operation = "poll-order"
    with _session(exchange) as session:
        assert session.get(url).status_code == 404
    assert exchange.last_status == 404
    assert exchange.last_retry_after is None
    assert len(seen) == 1
    assert seen[0][1] == "poll-order"
    assert 0 <= seen[0][0] < 5


def test_a_broken_hook_does_not_break_the_request(url: str) -> None:
    def broken(_seconds: float, _operation: str) -> None:
        raise RuntimeError("metrics are down")

    with _session(Exchange("x.example", 10, 5, broken)) as session:
        assert session.get(url).status_code == 404


def test_no_request_leaves_after_the_deadline(url: str) -> None:
    seen: list[str] = []
    exchange = Exchange("x.example", 0.01, 5, lambda _s, op: seen.append(op))
    time.sleep(0.02)
    with _session(exchange) as session, pytest.raises(AcmeDeadlineExceededError) as late:
        session.get(url)
    assert seen == []
    assert "x.example" in str(late.value)
    assert "0.01 s" in str(late.value)


def test_sleep_never_outlasts_the_deadline() -> None:
    exchange = Exchange("x.example", 0.05, 5)
    started = time.monotonic()
    with pytest.raises(AcmeDeadlineExceededError):
        exchange.sleep(10)
    assert time.monotonic() - started < 1


# -- a server that never stops talking ----------------------------------------------------


class _Endless(BaseHTTPRequestHandler):
    """/endless: a close-delimited body that never ends; /declared: a 10 GiB Content-Length;
    /trickle: a byte now and then, forever; /small: 100 bytes."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if self.path == "/small":
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b"x" * 100)
            return
        if self.path == "/declared":
            self.send_header("Content-Length", str(10 * 2**30))
        self.end_headers()
        chunk = b"{" * 65536 if self.path != "/trickle" else b" "
        try:
            while True:
                self.wfile.write(chunk)
                self.wfile.flush()
                if self.path == "/trickle":
                    time.sleep(0.05)
        except OSError:
            pass  # the client hung up: what it should do

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture(scope="module")
def endless() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endless)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_body_within_the_bound_is_read_whole(endless: str) -> None:
    with _session(Exchange("x.example", 10, 5), max_body_bytes=100) as session:
        assert session.get(f"{endless}/small").content == b"x" * 100


def test_an_endless_body_is_cut_at_the_bound_with_a_clear_error(endless: str) -> None:
    exchange = Exchange("x.example", 30, 5)
    exchange.operation = "download-certificate"
    with _session(exchange) as session, pytest.raises(AcmeResponseTooLargeError) as refused:
        session.get(f"{endless}/endless")
    message = str(refused.value)
    assert f"longer than {MAX_BODY_BYTES} bytes" in message
    assert "download-certificate for x.example" in message


def test_a_declared_length_over_the_bound_is_refused_before_reading(endless: str) -> None:
    with (
        _session(Exchange("x.example", 30, 5)) as session,
        pytest.raises(AcmeResponseTooLargeError, match=r"declares 10737418240 bytes"),
    ):
        session.get(f"{endless}/declared")


def test_a_trickling_body_ends_at_the_deadline(endless: str) -> None:
    with (
        _session(Exchange("x.example", 0.5, 5)) as session,
        pytest.raises(AcmeDeadlineExceededError),
    ):
        session.get(f"{endless}/trickle")


def test_a_streaming_caller_reads_for_itself(endless: str) -> None:
    with _session(Exchange("x.example", 30, 5), max_body_bytes=10) as session:
        response = session.get(f"{endless}/small", stream=True)
        assert len(response.raw.read(100)) == 100
        response.close()


def test_an_endless_directory_means_no_renewal_information(
    endless: str, caplog: pytest.LogCaptureFixture
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "www.example.com")])
    now = datetime.now(UTC)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(0x1234)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=89))
        .add_extension(x509.AuthorityKeyIdentifier(b"k" * 20, None, None), critical=False)
        .sign(key, hashes.SHA256())
    )
    chain = leaf.public_bytes(serialization.Encoding.PEM)
    assert fetch_renewal_info(f"{endless}/endless", chain, deadline=30) is None
    assert "longer than" in caplog.text


# --- the idle pool -----------------------------------------------------------------------


@dataclass
class _Item:
    name: str
    closed: bool = False

    def close(self) -> None:
        self.closed = True


@dataclass
class _Clock:
    now: float = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_pool_hands_out_the_newest_idle_item_to_one_caller_only() -> None:
    pool: IdlePool[_Item] = IdlePool(monotonic=_Clock())
    assert pool.take() is None
    first, second = _Item("first"), _Item("second")
    pool.give(first)
    pool.give(second)
    assert pool.take() is second  # the newest: the likeliest to be still open
    assert pool.take() is first
    assert pool.take() is None, "an item handed out twice"


def test_an_item_idle_too_long_is_closed_not_handed_out() -> None:
    clock = _Clock()
    pool: IdlePool[_Item] = IdlePool(idle_seconds=30, monotonic=clock)
    old, recent = _Item("old"), _Item("recent")
    pool.give(old)
    clock.now += 20
    pool.give(recent)
    clock.now += 15  # old: 35 s idle, recent: 15 s
    assert pool.take() is recent
    assert pool.take() is None
    assert old.closed and not recent.closed


def test_the_pool_keeps_a_bounded_number_and_closes_the_rest() -> None:
    pool: IdlePool[_Item] = IdlePool(max_idle=2, monotonic=_Clock())
    items = [_Item(str(n)) for n in range(4)]
    for item in items:
        pool.give(item)
    assert len(pool) == 2
    assert [item.closed for item in items] == [True, True, False, False]
    pool.close()
    assert len(pool) == 0 and all(item.closed for item in items)


def test_the_pool_is_safe_across_threads() -> None:
    pool: IdlePool[_Item] = IdlePool()
    held: set[int] = set()
    guard = threading.Lock()
    clashes: list[str] = []

    def work(n: int) -> None:
        item = pool.take() or _Item(str(n))
        with guard:
            if id(item) in held:
                clashes.append(item.name)
            held.add(id(item))
        with guard:
            held.discard(id(item))
        pool.give(item)

    def repeat(n: int) -> None:
        for _ in range(200):
            work(n)

    threads = [threading.Thread(target=repeat, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert clashes == []
    assert len(pool) <= 8
