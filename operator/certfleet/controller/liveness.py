"""The liveness endpoint of a standby replica, which is alive though kopf (whose endpoint
answers probes) is not running yet."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class _HealthHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"standby": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # probes every few seconds: not worth a log line


@contextmanager
def standby_liveness(url: str) -> Iterator[None]:
    """A waiting replica is alive though kopf (whose endpoint answers probes) is not running
    yet: answer the liveness URL until the block ends and kopf takes the port over."""
    parsed = urlsplit(url)
    server = ThreadingHTTPServer((parsed.hostname or "0.0.0.0", parsed.port or 80), _HealthHandler)  # noqa: S104
    thread = threading.Thread(target=server.serve_forever, name="standby-liveness", daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
