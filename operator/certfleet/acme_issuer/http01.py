"""The HTTP-01 responder: the fleet's webservers proxy /.well-known/acme-challenge/ here.

`ChallengeStore` holds the key authorizations of the challenges in flight; `Http01Server`
answers the CA's GET for each token from it, and 404 for everything else.
"""

from __future__ import annotations

import logging
import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger(__name__)

CHALLENGE_PATH = "/.well-known/acme-challenge/"
# RFC 8555 8.3: a token has >= 128 bits of entropy in base64url without padding (>= 22
# characters; Let's Encrypt and pebble send 43). The upper bound keeps junk out of the store.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{22,128}")


def is_valid_token(token: str) -> bool:
    return _TOKEN.fullmatch(token) is not None


class ChallengeStore:
    """Key authorizations by token, shared by issuers (writers) and the server (reader)."""

    def __init__(self) -> None:
        self._answers: dict[str, str] = {}
        self._lock = threading.Lock()

    def put(self, token: str, key_authorization: str) -> None:
        if not is_valid_token(token):
            raise ValueError("an HTTP-01 token must be 22 to 128 base64url characters")
        with self._lock:
            self._answers[token] = key_authorization

    def remove(self, token: str) -> None:
        with self._lock:
            self._answers.pop(token, None)

    def get(self, token: str) -> str | None:
        if not is_valid_token(token):
            return None
        with self._lock:
            return self._answers.get(token)

    def __len__(self) -> int:
        with self._lock:
            return len(self._answers)


class _ChallengeHandler(BaseHTTPRequestHandler):
    server: _ChallengeHTTPServer
    server_version = "certfleet-http01"
    sys_version = ""
    # A client that stops sending must not hold a thread for ever.
    timeout = 10

    def do_GET(self) -> None:
        self._answer(with_body=True)

    def do_HEAD(self) -> None:
        self._answer(with_body=False)

    def _answer(self, with_body: bool) -> None:
        path = self.path.split("?", 1)[0]
        token = path[len(CHALLENGE_PATH) :] if path.startswith(CHALLENGE_PATH) else ""
        answer = self.server.challenges.get(token) if token else None
        status = HTTPStatus.NOT_FOUND if answer is None else HTTPStatus.OK
        # DEBUG: anyone on the internet can make these requests; INFO would let them fill logs.
        log.debug("http-01 %s %s: %d", self.command, _short(token), status)
        self._send(status, b"not found\n" if answer is None else answer.encode(), with_body)

    def _send(self, status: HTTPStatus, body: bytes, with_body: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """_answer logs a terse line instead of the stdlib's access line on stderr."""

    def log_message(self, format: str, *args: object) -> None:
        # Only malformed requests and unsupported methods arrive here now.
        log.debug("http-01 server: " + format, *args)


class _ChallengeHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # CAs validate from several vantage points at once, through every webserver's proxy: a
    # backlog of 5 (the stdlib's) turns a burst into 1 s SYN retransmits.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], challenges: ChallengeStore) -> None:
        self.challenges = challenges
        super().__init__(address, _ChallengeHandler)


class Http01Server:
    """Serves `store` on host:port (0 picks a free port: see `port` after `start()`)."""

    def __init__(self, store: ChallengeStore, host: str, port: int) -> None:
        self.store = store
        self.host = host
        self._requested_port = port
        self._server: _ChallengeHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the HTTP-01 server is not running")
        return int(self._server.server_address[1])

    def start(self) -> None:
        if self._server is not None:
            return
        self._server = _ChallengeHTTPServer((self.host, self._requested_port), self.store)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name=f"http01-{self.port}",
            daemon=True,
        )
        self._thread.start()
        log.info("http-01 server listening on %s:%d", self.host, self.port)

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server, self._thread = None, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Http01Server:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def _short(token: str) -> str:
    # Enough to correlate with the CA's view; never the key authorization, and nothing a
    # client made up (it could forge log lines).
    return token[:8] + "..." if is_valid_token(token) else "(no token)"
