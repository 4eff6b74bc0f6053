"""Requests counted where they arrive, not estimated: kube-apiserver's audit log (one line per
request, with the user and user agent, so the operator's requests are told from the
benchmark's own), versitygw's access log (one line per S3 request, with the access key), and
bytes on the wire through a TCP proxy in front of the agents' S3 endpoint."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
# One event per request, written when the answer is complete (a watch: when it ends).
omitStages: ["RequestReceived", "ResponseStarted"]
rules:
- level: Metadata
"""


@dataclass
class Tally:
    """Requests by kind (e.g. "GET secrets 404") and their total."""

    kinds: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.kinds.values())

    def per(self, count: int) -> float:
        return self.total / count if count else 0.0

    def without(self, word: str) -> Tally:
        """The requests whose kind does not mention `word` (e.g. the Lease renewals, which
        do not grow with the number of certificates)."""
        return Tally(Counter({k: v for k, v in self.kinds.items() if word not in k.split()}))

    def top(self, limit: int = 8) -> dict[str, int]:
        return dict(self.kinds.most_common(limit))


class _LogFrom:
    """Lines of an append-only log file after a mark (its size when the mark was taken)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def mark(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def lines_since(self, mark: int) -> list[str]:
        with self.path.open("rb") as log:
            log.seek(mark)
            data = log.read()
        # The last line may still be half written: only whole lines count.
        return data[: data.rfind(b"\n") + 1].decode(errors="replace").splitlines()


class AuditLog(_LogFrom):
    """kube-apiserver's audit log: requests by user ("who": a user name, or a user name and a
    user-agent prefix)."""

    def events(self, mark: int, user: str, exclude_agents: tuple[str, ...] = ()) -> list[Any]:
        """The audit events of `user`'s requests since `mark`, but those of user agents
        starting with one of `exclude_agents`."""
        found = []
        for line in self.lines_since(mark):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("user", {}).get("username") != user:
                continue
            if str(event.get("userAgent", "")).startswith(exclude_agents):
                continue
            found.append(event)
        return found

    def tally(self, mark: int, user: str, exclude_agents: tuple[str, ...] = ()) -> Tally:
        tally = Tally()
        for event in self.events(mark, user, exclude_agents):
            ref = event.get("objectRef", {})
            resource = ref.get("resource", event.get("requestURI", "?").split("?")[0])
            if ref.get("subresource"):
                resource += "/" + ref["subresource"]
            code = event.get("responseStatus", {}).get("code", "?")
            tally.kinds[f"{event.get('verb', '?')} {resource} {code}"] += 1
        return tally


# versitygw's access log (S3 server access log format):
# owner bucket [time] ip requester request-id operation key uri status error ...
_ACCESS_LINE = re.compile(r"^\S+ \S+ \[[^\]]*\] \S+ (\S+) \S+ s3_(\S+) \S+ \S+ (\d{3}) ")


def seconds(timestamp: str) -> float:
    """An audit timestamp (RFC 3339, microseconds) as Unix seconds."""
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


class S3AccessLog(_LogFrom):
    def tally(self, mark: int, requesters: set[str]) -> Tally:
        tally = Tally()
        for line in self.lines_since(mark):
            found = _ACCESS_LINE.match(line)
            if found and found.group(1) in requesters:
                tally.kinds[f"{found.group(2)} {found.group(3)}"] += 1
        return tally


class ByteCountingProxy:
    """A TCP proxy on loopback that counts the bytes each way (HTTP headers included):
    what an S3 provider would bill the agents for."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self._lock = threading.Lock()
        self.sent = 0  # client -> S3
        self.received = 0  # S3 -> client
        self.connections = 0
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name="s3-proxy").start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def counts(self) -> tuple[int, int, int]:
        with self._lock:
            return self.sent, self.received, self.connections

    def close(self) -> None:
        self._closed = True
        self._server.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket, outbound: bool) -> None:
        try:
            while chunk := source.recv(65536):
                target.sendall(chunk)
                with self._lock:
                    if outbound:
                        self.sent += len(chunk)
                    else:
                        self.received += len(chunk)
        except OSError:
            pass
        finally:
            for end in (source, target):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()
