"""Every HTTP call a lexicon provider makes has a timeout: a provider that accepts the
connection and never answers fails the operation within its timeout, and frees its thread
(the connection is closed by certfleet, not left hanging)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
import requests

from certfleet.acme_issuer.dns01.lexicon_records import LexiconRecords, bounded_timeout
from certfleet.acme_issuer.errors import Dns01Error


class SilentServer:
    """Accepts connections, reads the request, never replies; notes when the client hangs
    up."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted = threading.Event()
        self.client_gave_up = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            connection, _ = self.listener.accept()
        except OSError:
            return  # closed before anyone connected
        self.accepted.set()
        with connection:
            while connection.recv(4096):
                pass  # the request; no answer ever
        self.client_gave_up.set()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def test_a_provider_that_never_answers_fails_within_the_timeout(silent: SilentServer) -> None:
    records = LexiconRecords(
        "powerdns",
        {"auth_token": "pdns-key", "pdns_server": f"http://127.0.0.1:{silent.port}"},
        timeout=1.0,
    )
    with pytest.raises(Dns01Error, match="did not answer within 1 s") as failed:
        records.add_txt("example.com", "_acme-challenge.www.example.com", "dmFsdWU")
    assert silent.accepted.is_set()  # it did connect: the read was what hung
    assert "pdns-key" not in str(failed.value)
    # The provider's own call ended (a read timeout), so its thread is free: the client
    # closed the connection. Without a timeout it would wait on the socket forever.
    assert silent.client_gave_up.wait(timeout=10)


def test_the_timeout_is_what_is_left_of_the_operation() -> None:
    assert bounded_timeout(None, 110.0, 100.0) == 10.0
    assert bounded_timeout(3, 110.0, 100.0) == 3.0
    assert bounded_timeout(60.0, 110.0, 100.0) == 10.0
    assert bounded_timeout((5, None), 110.0, 100.0) == (5.0, 10.0)
    assert bounded_timeout((60, 60), 110.0, 100.0) == (10.0, 10.0)
    with pytest.raises(requests.Timeout):
        bounded_timeout(None, 100.0, 100.0)


def test_calls_outside_a_provider_operation_keep_their_own_timeout() -> None:
    assert bounded_timeout(None, None, 100.0) is None
    assert bounded_timeout(7, None, 100.0) == 7
