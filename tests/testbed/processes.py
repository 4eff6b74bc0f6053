"""Server processes of the test bed: started in their own process group, always stopped.

Every process is registered so that it is stopped when its owner closes it, at interpreter exit, and
on SIGTERM/SIGINT; PR_SET_PDEATHSIG also takes it down if the test run itself is killed outright.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Self

from testbed.waiting import WaitTimeout, wait_for

_PR_SET_PDEATHSIG = 1
_running: set[ServerProcess] = set()


class ServerStartError(RuntimeError):
    """A test bed server did not start; the message carries the end of its log."""


_HANDED_OUT: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A port free now, and never one this process handed out before: the kernel may give
    the same free port to two binds in a row (pebble was once started with its ACME and its
    management port the same, and could not listen on the second)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class ServerProcess:
    """One running server; its output goes to `log_path`."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        full_env = dict(os.environ)
        full_env.update(env or {})
        try:
            self.popen = subprocess.Popen(
                self.argv,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=full_env,
                cwd=cwd,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        except OSError as error:
            self._log.close()
            raise ServerStartError(f"{name}: cannot run {self.argv[0]}: {error}") from error
        _running.add(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_until(
        self, ready: Callable[[], bool], timeout: float = 60.0, what: str = "ready"
    ) -> float:
        """Polls `ready` until it holds, failing at once if the process exits; returns seconds."""

        def ready_while_running() -> bool:
            if not self.alive():
                raise ServerStartError(
                    f"{self.name} exited with code {self.popen.returncode} before it was {what};"
                    f" log {self.log_path}:\n{self.log_tail()}"
                )
            return ready()

        started = time.monotonic()
        try:
            wait_for(f"{self.name} {what}", ready_while_running, timeout)
        except WaitTimeout:
            self.stop()
            raise ServerStartError(
                f"{self.name} was not {what} within {timeout:.0f} s;"
                f" log {self.log_path}:\n{self.log_tail()}"
            ) from None
        return time.monotonic() - started

    def signal(self, signum: int) -> None:
        if self.alive():
            os.killpg(self.popen.pid, signum)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM to the whole process group, SIGKILL after `grace` seconds."""
        if self.alive():
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
            except ProcessLookupError:
                pass
        # Children that left the group leader behind (e.g. nginx workers) go too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()
        self._log.close()
        _running.discard(self)

    def kill(self) -> None:
        """SIGKILL at once: a crash, for tests that prove recovery."""
        self.signal(signal.SIGKILL)
        self.stop(grace=0)


class Servers:
    """A test bed part that starts servers: a context manager that stops whatever it started,
    also when starting fails halfway (etcd up, kube-apiserver refusing)."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def running_process_groups() -> list[int]:
    return [process.pid for process in _running if process.alive()]


def process_group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_all() -> None:
    for process in list(_running):
        process.stop(grace=5)


def _stop_all_and_exit(signum: int, _frame: object) -> None:
    stop_all()
    # At once: teardown code that still ran would talk to the servers just stopped and wait
    # for their time-outs.
    os._exit(128 + signum)


atexit.register(stop_all)
if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
    signal.signal(signal.SIGTERM, _stop_all_and_exit)


def http_ok(
    url: str,
    context: ssl.SSLContext | None = None,
    expect: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> bool:
    """True when `url` answers 200 (and its body contains `expect`, if given)."""
    try:
        request = urllib.request.Request(url, headers=dict(headers or {}))
        with urllib.request.urlopen(request, timeout=2, context=context) as response:
            return response.status == 200 and (expect is None or expect in response.read())
    except (urllib.error.URLError, OSError):
        return False


def tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False
