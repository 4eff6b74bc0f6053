"""The HTTP layer under the acme library for one issuance: deadline, timing and the last reply.

The library builds on a requests Session; a transport adapter mounted on it is requests'
public extension point. Through it every request of the issuance gets a timeout no longer
than what is left of the deadline, the optional `on_request` hook gets its duration, and the
status and Retry-After of the last response stay readable (the library's errors drop both).

The server is whatever URL a spec names, so its bodies are untrusted: each is read here, in
chunks, up to `max_body_bytes` and within the deadline (an endless or trickling body ends the
request with AcmeResponseTooLargeError or AcmeDeadlineExceededError), before the library or
the caller sees it: the directory, every JSON reply, problem documents, the certificate chain
and the renewal information alike.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, Protocol, TypeVar

import requests
from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter
from urllib3 import exceptions as urllib3_errors

from certfleet.acme_issuer.errors import AcmeDeadlineExceededError, AcmeResponseTooLargeError
from certfleet.core.pem import MAX_PEM_BYTES

log = logging.getLogger(__name__)

# No honest ACME reply comes near this: a chain of several certificates is a few KiB, a
# directory or an order well under one. The PEM parser's own bound, so a chain the parser
# would accept is never cut.
MAX_BODY_BYTES = MAX_PEM_BYTES
_CHUNK_BYTES = 16 * 1024

# on_request(duration_seconds, operation): e.g. a Prometheus histogram's observe.
RequestHook = Callable[[float, str], None]

# Below the keep-alive timeouts of the usual front ends (nginx 75 s, Go servers often 60 to
# 120 s): a connection idle longer may have been closed by the server, and a POST on a
# connection closed under it fails the issuance instead of being retried.
IDLE_SECONDS = 30.0
# Idle items kept per pool; more callers at once open their own, and those beyond this are
# closed when given back.
MAX_IDLE = 8


class Closable(Protocol):
    def close(self) -> None: ...


_Item = TypeVar("_Item", bound=Closable)


class IdlePool(Generic[_Item]):
    """Items no caller uses right now, newest first. `take` hands one out (None: the caller
    opens its own) and forgets it until `give` brings it back; an item idle for longer than
    `idle_seconds` is closed instead of handed out. Thread-safe."""

    def __init__(
        self,
        idle_seconds: float = IDLE_SECONDS,
        max_idle: int = MAX_IDLE,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._idle_seconds = idle_seconds
        self._max_idle = max_idle
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._idle: list[tuple[float, _Item]] = []  # (given back at, item), oldest first

    def take(self) -> _Item | None:
        stale: list[_Item] = []
        found: _Item | None = None
        now = self._monotonic()
        with self._lock:
            # Newest first: once one is stale, so is every older one.
            while self._idle:
                given_at, item = self._idle.pop()
                if now - given_at <= self._idle_seconds:
                    found = item
                    break
                stale.append(item)
        _close_all(stale)
        return found

    def give(self, item: _Item) -> None:
        surplus: list[_Item] = []
        with self._lock:
            self._idle.append((self._monotonic(), item))
            while len(self._idle) > self._max_idle:
                surplus.append(self._idle.pop(0)[1])
        _close_all(surplus)

    def close(self) -> None:
        with self._lock:
            items = [item for _, item in self._idle]
            self._idle.clear()
        _close_all(items)

    def __len__(self) -> int:
        with self._lock:
            return len(self._idle)


def _close_all(items: list[_Item]) -> None:
    for item in items:
        try:
            item.close()
        except Exception:  # a connection that fails to close is gone all the same
            log.debug("closing an idle connection failed", exc_info=True)


class Exchange:
    """The state one issuance shares with its transport adapter."""

    def __init__(
        self,
        what: str,
        budget_seconds: float,
        request_timeout: float,
        on_request: RequestHook | None = None,
    ) -> None:
        self.what = what
        self.budget_seconds = budget_seconds
        self.deadline = time.monotonic() + budget_seconds
        self.request_timeout = request_timeout
        self.on_request = on_request
        self.operation = "directory"
        self.last_status: int | None = None
        self.last_retry_after: str | None = None

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def check_deadline(self) -> None:
        if self.remaining() <= 0:
            raise AcmeDeadlineExceededError(
                f"ACME issuance for {self.what} did not finish within "
                f"{self.budget_seconds:g} s (at: {self.operation})"
            )

    def sleep(self, seconds: float) -> None:
        """Sleeps, but never past the deadline; raises once the deadline has passed."""
        self.check_deadline()
        time.sleep(max(0.0, min(seconds, self.remaining())))
        self.check_deadline()

    @contextmanager
    def step(self, operation: str) -> Iterator[None]:
        """Names the requests made inside, for the hook and for deadline messages."""
        previous, self.operation = self.operation, operation
        try:
            yield
        finally:
            self.operation = previous


class DeadlineAdapter(HTTPAdapter):
    def __init__(self, exchange: Exchange, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        super().__init__()
        self.exchange = exchange
        self.max_body_bytes = max_body_bytes

    def send(
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: dict[str, str] | None = None,
    ) -> Response:
        exchange = self.exchange
        exchange.check_deadline()
        bounded = max(0.001, min(exchange.request_timeout, exchange.remaining()))
        started = time.monotonic()
        try:
            # Always streamed from the socket: the body is read below, bounded.
            response = super().send(
                request, stream=True, timeout=bounded, verify=verify, cert=cert, proxies=proxies
            )
            exchange.last_status = response.status_code
            exchange.last_retry_after = response.headers.get("Retry-After")
            if not stream:
                self._read_body(response)
        finally:
            self._report(time.monotonic() - started)
        return response

    def _read_body(self, response: Response) -> None:
        """Reads the body into the response (as requests would), at most `max_body_bytes`
        (decoded) and never past the deadline; closes the connection otherwise."""
        limit, exchange = self.max_body_bytes, self.exchange
        where = f"ACME CA's response to {exchange.operation} for {exchange.what}"
        declared = response.headers.get("Content-Length", "")
        try:
            if declared.isdigit() and int(declared) > limit:
                raise AcmeResponseTooLargeError(
                    f"the {where} declares {declared} bytes; at most {limit} are read"
                )
            chunks, size = [], 0
            while True:
                # read1: whatever has arrived, so a body trickling a byte at a time still
                # meets the deadline check (a full-size read would wait for the whole chunk).
                chunk = response.raw.read1(_CHUNK_BYTES, decode_content=True)
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise AcmeResponseTooLargeError(
                        f"the {where} is longer than {limit} bytes; not read further"
                    )
                exchange.check_deadline()
                chunks.append(chunk)
        except urllib3_errors.HTTPError as error:
            response.close()
            raise _as_requests_error(error) from error
        except BaseException:
            response.close()
            raise
        # What requests' own Response.content does, with the bound.
        response._content = b"".join(chunks)
        response._content_consumed = True

    def _report(self, seconds: float) -> None:
        hook = self.exchange.on_request
        if hook is None:
            return
        try:
            hook(seconds, self.exchange.operation)
        except Exception:
            # A broken metrics hook must not fail an issuance.
            log.exception("the on_request hook failed")


def _as_requests_error(error: urllib3_errors.HTTPError) -> requests.RequestException:
    """What requests' own body reading raises for urllib3's errors (problems.translate knows
    requests' errors)."""
    if isinstance(error, urllib3_errors.ReadTimeoutError):
        return requests.ReadTimeout(error)
    if isinstance(error, urllib3_errors.DecodeError):
        return requests.exceptions.ContentDecodingError(error)
    return requests.ConnectionError(error)
