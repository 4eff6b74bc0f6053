from __future__ import annotations

import http.client
import logging
import socket
import threading
from collections.abc import Iterator

import pytest

from certfleet.acme_issuer import ChallengeStore, Http01Server, is_valid_token

TOKEN = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"  # RFC 8555's example token
ANSWER = TOKEN + ".9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"


@pytest.mark.parametrize(
    "token",
    [TOKEN, "a" * 22, "A-_z09" * 20, "x" * 128, "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"],
)
def test_base64url_tokens_of_sane_length_are_valid(token: str) -> None:
    assert is_valid_token(token)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "short",
        "a" * 21,
        "x" * 129,
        TOKEN + "=",
        TOKEN[:-1] + "/",
        "../../../../etc/passwd-aaaaaaaaaaaaaaaa",
        TOKEN[:-1] + ".",
        TOKEN + "\n",
        TOKEN[:-1] + "é",
        TOKEN[:-1] + "+",
    ],
)
def test_anything_else_is_not_a_token(token: str) -> None:
    assert not is_valid_token(token)


def test_the_store_puts_gets_and_removes() -> None:
    store = ChallengeStore()
    store.put(TOKEN, ANSWER)
    assert store.get(TOKEN) == ANSWER
    assert len(store) == 1
    store.remove(TOKEN)
    store.remove(TOKEN)  # idempotent: the issuer removes in a finally
    assert store.get(TOKEN) is None
    assert len(store) == 0


def test_the_store_refuses_an_invalid_token() -> None:
    with pytest.raises(ValueError, match="base64url"):
        ChallengeStore().put("../x", ANSWER)
    assert ChallengeStore().get("../x") is None


def test_the_store_is_safe_across_threads() -> None:
    store = ChallengeStore()
    tokens = [f"{i:022d}" for i in range(400)]

    def work(part: list[str]) -> None:
        for token in part:
            store.put(token, token)
            assert store.get(token) == token
        for token in part[::2]:
            store.remove(token)

    threads = [threading.Thread(target=work, args=(tokens[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(store) == 200


@pytest.fixture(scope="module")
def server() -> Iterator[Http01Server]:
    """One server for the read-only tests: stopping one takes up to its 0.2 s poll interval."""
    store = ChallengeStore()
    store.put(TOKEN, ANSWER)
    with Http01Server(store, "127.0.0.1", 0) as running:
        yield running


def _request(
    server: Http01Server, path: str, method: str = "GET"
) -> tuple[int, bytes, dict[str, str]]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    finally:
        connection.close()


def test_it_serves_a_stored_key_authorization(server: Http01Server) -> None:
    status, body, headers = _request(server, f"/.well-known/acme-challenge/{TOKEN}")
    assert (status, body) == (200, ANSWER.encode())
    assert headers["Content-Type"] == "text/plain"
    assert headers["Content-Length"] == str(len(ANSWER))


def test_head_answers_without_a_body(server: Http01Server) -> None:
    status, body, headers = _request(server, f"/.well-known/acme-challenge/{TOKEN}", "HEAD")
    assert (status, body) == (200, b"")
    assert headers["Content-Length"] == str(len(ANSWER))


def test_a_query_string_does_not_change_the_answer(server: Http01Server) -> None:
    status, body, _ = _request(server, f"/.well-known/acme-challenge/{TOKEN}?x=1")
    assert (status, body) == (200, ANSWER.encode())


@pytest.mark.parametrize(
    "path",
    [
        "/.well-known/acme-challenge/" + "b" * 43,  # valid token, not stored
        "/.well-known/acme-challenge/",  # no listing
        "/.well-known/acme-challenge",
        "/.well-known/",
        "/",
        f"/{TOKEN}",
        f"/.well-known/acme-challenge/{TOKEN}/",
        f"/.well-known/acme-challenge/{TOKEN}/x",
        f"/.well-known/acme-challenge/../acme-challenge/{TOKEN}",
        f"/.well-known/acme-challenge/{TOKEN}%00",
        "/.well-known/acme-challenge/..%2f..%2fetc%2fpasswd",
    ],
)
def test_everything_else_is_404(server: Http01Server, path: str) -> None:
    status, body, _ = _request(server, path)
    assert status == 404
    assert ANSWER.encode() not in body


def test_other_methods_are_refused(server: Http01Server) -> None:
    status, body, _ = _request(server, f"/.well-known/acme-challenge/{TOKEN}", "POST")
    assert status == 501
    assert ANSWER.encode() not in body


def test_a_removed_token_is_404_at_once() -> None:
    store = ChallengeStore()
    store.put(TOKEN, ANSWER)
    with Http01Server(store, "127.0.0.1", 0) as server:
        assert _request(server, f"/.well-known/acme-challenge/{TOKEN}")[0] == 200
        store.remove(TOKEN)
        assert _request(server, f"/.well-known/acme-challenge/{TOKEN}")[0] == 404


def test_log_lines_are_terse_and_carry_no_key_authorization(
    server: Http01Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="certfleet.acme_issuer.http01")
    _request(server, f"/.well-known/acme-challenge/{TOKEN}")
    _request(server, "/.well-known/acme-challenge/%0aforged-line")

    text = caplog.text
    assert f"GET {TOKEN[:8]}...: 200" in text
    assert "GET (no token): 404" in text
    assert ANSWER not in text
    assert TOKEN not in text
    assert "forged" not in text


def test_port_zero_binds_a_free_port_and_stop_releases_it() -> None:
    server = Http01Server(ChallengeStore(), "127.0.0.1", 0)
    with pytest.raises(RuntimeError):
        _ = server.port
    server.start()
    port = server.port
    assert port > 0
    server.start()  # a second start is a no-op
    assert server.port == port
    server.stop()
    server.stop()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # free again


def test_many_requests_at_once_are_served(server: Http01Server) -> None:
    results: list[int] = []

    def fetch() -> None:
        results.append(_request(server, f"/.well-known/acme-challenge/{TOKEN}")[0])

    threads = [threading.Thread(target=fetch) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * 20
