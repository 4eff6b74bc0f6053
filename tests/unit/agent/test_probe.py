"""The TLS prober against an in-process TLS listener on loopback."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from certfleet.agent.probe import ProbeError, TlsProber

from .pki import DAY, Pair, ca_pem, leaf


class Listener:
    """Serves `pair` over TLS until closed; `pair` can be swapped (a reload)."""

    def __init__(self, directory: Path, pair: Pair) -> None:
        self.directory = directory
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.serve(pair)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def serve(self, pair: Pair) -> None:
        (self.directory / "chain.pem").write_bytes(pair.fullchain)
        (self.directory / "key.pem").write_bytes(pair.key)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.directory / "chain.pem", self.directory / "key.pem")
        self.context = context

    def _loop(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                connection, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                with self.context.wrap_socket(connection, server_side=True):
                    pass
            except (OSError, ssl.SSLError):
                connection.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


NOW = datetime.now(UTC)  # real handshakes check real dates
DOMAIN = "www.example.com"


@pytest.fixture
def pair() -> Pair:
    return leaf(DOMAIN, not_before=NOW - DAY, not_after=NOW + 30 * DAY)


@pytest.fixture
def listener(tmp_path: Path, pair: Pair) -> Iterator[Listener]:
    served = Listener(tmp_path, pair)
    yield served
    served.close()


def ca_file(tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    path.write_bytes(ca_pem())
    return path


def test_served_names_the_leaf(listener: Listener, pair: Pair) -> None:
    served = TlsProber("127.0.0.1", listener.port, DOMAIN).served()
    assert (served.serial, served.sha256) == (pair.serial, pair.sha256)
    assert served.not_after == pair.certificate.not_valid_after_utc


def test_wait_for_returns_once_the_new_leaf_is_served(
    listener: Listener, pair: Pair, tmp_path: Path
) -> None:
    new = leaf(DOMAIN, not_before=NOW - DAY, not_after=NOW + 60 * DAY)
    timer = threading.Timer(0.2, listener.serve, [new])
    timer.start()
    prober = TlsProber("127.0.0.1", listener.port, DOMAIN, ca_file(tmp_path))
    served = prober.wait_for(new.sha256, timeout=5)
    timer.join()
    assert served.serial == new.serial


def test_wait_for_says_what_is_served_instead(listener: Listener, pair: Pair) -> None:
    with pytest.raises(ProbeError, match=f"still serves serial {pair.serial}"):
        TlsProber("127.0.0.1", listener.port, DOMAIN).wait_for("00" * 32, timeout=0.2)


def test_verification_fails_for_an_unknown_ca_and_for_another_name(
    listener: Listener, tmp_path: Path, pair: Pair
) -> None:
    TlsProber("127.0.0.1", listener.port, DOMAIN, ca_file(tmp_path)).verify()
    other_ca = tmp_path / "other.pem"
    other_ca.write_bytes(ca_pem(other=True))
    with pytest.raises(ProbeError, match="failed"):
        TlsProber("127.0.0.1", listener.port, DOMAIN, other_ca).verify()
    with pytest.raises(ProbeError, match="failed"):
        TlsProber("127.0.0.1", listener.port, "other.example.com", ca_file(tmp_path)).verify()


def test_nothing_listening_is_a_probe_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    with pytest.raises(ProbeError, match=r"handshake with 127\.0\.0\.1"):
        TlsProber("127.0.0.1", port, DOMAIN, timeout=1).served()
