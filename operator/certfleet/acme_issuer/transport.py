"""The HTTP layer under the acme library for one issuance: deadline, timing and the last reply.

The library builds on a requests Session; a transport adapter mounted on it is requests'
public extension point. Through it every request of the issuance gets a timeout no longer
than what is left of the deadline, the optional `on_request` hook gets its duration, and the
status and Retry-After of the last response stay readable (the library's errors drop both).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter

from certfleet.acme_issuer.errors import AcmeDeadlineExceededError

log = logging.getLogger(__name__)

# on_request(duration_seconds, operation): e.g. a Prometheus histogram's observe.
RequestHook = Callable[[float, str], None]


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
    def __init__(self, exchange: Exchange) -> None:
        super().__init__()
        self.exchange = exchange

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
            response = super().send(
                request, stream=stream, timeout=bounded, verify=verify, cert=cert, proxies=proxies
            )
        finally:
            self._report(time.monotonic() - started)
        exchange.last_status = response.status_code
        exchange.last_retry_after = response.headers.get("Retry-After")
        return response

    def _report(self, seconds: float) -> None:
        hook = self.exchange.on_request
        if hook is None:
            return
        try:
            hook(seconds, self.exchange.operation)
        except Exception:
            # A broken metrics hook must not fail an issuance.
            log.exception("the on_request hook failed")
