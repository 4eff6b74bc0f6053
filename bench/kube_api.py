"""A small, fast Kubernetes client of the benchmark's own, under its own user
(`certfleet-bench`), so the audit log tells its requests from the operator's: creates
resources over kept-alive connections and watches them become Ready, with no kubectl start-up
in the measured time."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

from certfleet.api.names import GROUP, MANAGED_CERTIFICATES, VERSION
from testbed.control_plane import ControlPlane

BENCH_USER = "certfleet-bench"
BENCH_AGENT = "certfleet-bench"
_BASE = f"/apis/{GROUP}/{VERSION}"


def is_ready(resource: Mapping[str, Any]) -> bool:
    conditions = resource.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


class KubeApi:
    def __init__(self, plane: ControlPlane) -> None:
        pair = plane.pki.client_pair("bench", BENCH_USER, ("system:masters",))
        self.context = ssl.create_default_context(cafile=str(plane.pki.cert_path))
        self.context.load_cert_chain(str(pair.cert), str(pair.key))
        parsed = urllib.parse.urlsplit(plane.server_url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 443
        self._local = threading.local()

    def connection(self, timeout: float = 30) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            self.host, self.port, context=self.context, timeout=timeout
        )

    def request(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        kept: http.client.HTTPSConnection | None = getattr(self._local, "connection", None)
        try:
            return self._request(kept or self.connection(), method, path, body)
        except (ConnectionError, ssl.SSLEOFError, http.client.RemoteDisconnected):
            if kept is None:
                raise
            # The API server closes a connection left idle (minutes of publishing): once
            # more on a new one; nothing was answered on the old.
            return self._request(self.connection(), method, path, body)

    def _request(
        self, connection: http.client.HTTPSConnection, method: str, path: str, body: object
    ) -> tuple[int, Any]:
        self._local.connection = connection
        headers = {"Accept": "application/json", "User-Agent": BENCH_AGENT}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = (
                "application/merge-patch+json" if method == "PATCH" else "application/json"
            )
        try:
            connection.request(method, path, payload, headers)
            response = connection.getresponse()
        except (OSError, http.client.HTTPException):
            self._local.connection = None
            connection.close()
            raise
        data = response.read()
        return response.status, json.loads(data) if data else None

    def certificates_path(self, namespace: str, name: str = "") -> str:
        path = f"{_BASE}/namespaces/{namespace}/{MANAGED_CERTIFICATES}"
        return f"{path}/{name}" if name else path

    def create(self, resource: Mapping[str, Any]) -> None:
        metadata = resource["metadata"]
        api = resource["apiVersion"]
        kind = resource["kind"]
        if kind == "ManagedCertificate":
            path = self.certificates_path(metadata["namespace"])
        elif kind == "Namespace":
            path = "/api/v1/namespaces"
        else:
            raise ValueError(f"the bench creates no {api} {kind}")
        status, answer = self.request("POST", path, resource)
        if status != 201:
            raise RuntimeError(f"creating {kind} {metadata['name']}: {status} {answer}")

    def certificates(self, namespace: str) -> list[dict[str, Any]]:
        status, answer = self.request("GET", self.certificates_path(namespace))
        if status != 200:
            raise RuntimeError(f"listing {namespace}: {status} {answer}")
        items: list[dict[str, Any]] = answer["items"]
        return items


class ReadyWatch:
    """Watches the ManagedCertificates of a namespace (or one of them) and notes when each is
    first seen Ready=True (time.monotonic())."""

    def __init__(self, api: KubeApi, namespace: str, name: str | None = None) -> None:
        query = {"watch": "1", "timeoutSeconds": "1800", "allowWatchBookmarks": "false"}
        if name is not None:
            query["fieldSelector"] = f"metadata.name={name}"
        self._path = api.certificates_path(namespace) + "?" + urllib.parse.urlencode(query)
        self._connection = api.connection(timeout=1900)
        self._condition = threading.Condition()
        self.ready_at: dict[str, float] = {}
        self._error: BaseException | None = None
        self._opened = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="ready-watch")
        self._thread.start()
        if not self._opened.wait(30):
            raise RuntimeError("the watch did not open")
        if self._error is not None:
            raise RuntimeError(f"the watch failed: {self._error!r}")

    def _events(self) -> Iterable[dict[str, Any]]:
        deadline = time.monotonic() + 30
        while True:
            self._connection.request("GET", self._path, headers={"User-Agent": BENCH_AGENT})
            response = self._connection.getresponse()
            if response.status == 200:
                break
            body = response.read()[:300]
            # A new kind's watch cache answers 429 for a moment after the CRD is established.
            if response.status != 429 or time.monotonic() > deadline:
                raise RuntimeError(f"watch: {response.status} {body!r}")
            time.sleep(0.5)
        self._opened.set()
        while line := response.readline():
            yield json.loads(line)

    def _run(self) -> None:
        try:
            for event in self._events():
                resource = event.get("object", {})
                if event.get("type") in ("ADDED", "MODIFIED") and is_ready(resource):
                    name = resource["metadata"]["name"]
                    with self._condition:
                        self.ready_at.setdefault(name, time.monotonic())
                        self._condition.notify_all()
        except (
            OSError,
            http.client.HTTPException,
            ValueError,
            RuntimeError,
            AttributeError,
        ) as error:
            # AttributeError: http.client's answer to a connection closed under its reader.
            self._error = error
        finally:
            self._opened.set()
            with self._condition:
                self._condition.notify_all()

    def wait(self, names: Iterable[str], timeout: float) -> dict[str, float]:
        """Until every name is Ready; returns their times. Raises on a timeout."""
        wanted = set(names)
        deadline = time.monotonic() + timeout
        with self._condition:
            while not wanted <= self.ready_at.keys():
                remaining = deadline - time.monotonic()
                if self._error is not None:
                    raise RuntimeError(f"the watch failed: {self._error!r}")
                if remaining <= 0:
                    missing = sorted(wanted - self.ready_at.keys())
                    raise TimeoutError(
                        f"{len(missing)} of {len(wanted)} not Ready in {timeout:.0f} s, "
                        f"e.g. {missing[:3]}"
                    )
                self._condition.wait(min(remaining, 1.0))
            return {name: self.ready_at[name] for name in wanted}

    def close(self) -> None:
        sock = self._connection.sock
        if sock is not None:  # wakes the reader blocked in recv
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._connection.close()
