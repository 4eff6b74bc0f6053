"""Test the webserver's configuration and reload it gracefully, by running its own commands.

nginx: `nginx -t -q`, then `nginx -s reload` (the master starts new workers with the new files;
old workers finish their connections). apache2: `apachectl configtest`, then `apachectl
graceful`. lighttpd: `lighttpd -tt -f <conf>` (-tt also loads the modules, so a bad key or
certificate file fails it), then `systemctl reload lighttpd`: Debian's unit sends SIGUSR1,
lighttpd's graceful restart since 1.4.46 (old connections finish, the listening sockets stay).
haproxy: `haproxy -c -q -f <conf>`, then `systemctl reload haproxy`: Debian's unit runs it in
master-worker mode (-Ws) and sends the master SIGUSR2 (new workers, old ones finish).

Without systemd, `pid_file` (the master's pid file: nginx's `pid`, apache's PidFile, lighttpd's
server.pid-file, haproxy's -p) replaces the reload command by the kind's graceful signal to that
process. Anything else (a webserver in another container): the `command` kind with explicit
commands. Commands run without a shell; a test command is optional.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol

DEFAULT_TIMEOUT_SECONDS = 60.0
# Enough of a failing command's output to say why; its output names files, never their bytes.
MAX_OUTPUT_CHARACTERS = 2000


class WebserverKind(StrEnum):
    NGINX = "nginx"
    APACHE2 = "apache2"
    LIGHTTPD = "lighttpd"
    HAPROXY = "haproxy"
    COMMAND = "command"


DEFAULT_COMMANDS: dict[WebserverKind, tuple[tuple[str, ...], tuple[str, ...]]] = {
    WebserverKind.NGINX: (("nginx", "-t", "-q"), ("nginx", "-s", "reload")),
    WebserverKind.APACHE2: (("apachectl", "configtest"), ("apachectl", "graceful")),
    WebserverKind.LIGHTTPD: (
        ("lighttpd", "-tt", "-f", "/etc/lighttpd/lighttpd.conf"),
        ("systemctl", "reload", "lighttpd"),
    ),
    WebserverKind.HAPROXY: (
        ("haproxy", "-c", "-q", "-f", "/etc/haproxy/haproxy.cfg"),
        ("systemctl", "reload", "haproxy"),
    ),
}
# The master process's graceful reload, for `pid_file`.
RELOAD_SIGNALS: dict[WebserverKind, signal.Signals] = {
    WebserverKind.NGINX: signal.SIGHUP,
    WebserverKind.APACHE2: signal.SIGUSR1,  # apache's "graceful"
    WebserverKind.LIGHTTPD: signal.SIGUSR1,
    WebserverKind.HAPROXY: signal.SIGUSR2,  # master-worker mode (-W / -Ws)
}
_PID_FILE_LIMIT = 64


@dataclass(frozen=True, slots=True)
class CommandResult:
    ok: bool
    detail: str  # the command and the end of its output, for the status and the log


class Webserver(Protocol):
    def test(self) -> CommandResult: ...

    def reload(self) -> CommandResult: ...


class CommandWebserver:
    """A webserver driven by a test command (optional) and a reload command."""

    def __init__(
        self,
        test_command: Sequence[str] | None,
        reload_command: Sequence[str],
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        if not reload_command:
            raise ValueError("a reload command is required")
        self.test_command = tuple(test_command) if test_command else None
        self.reload_command = tuple(reload_command)
        self._timeout = timeout

    @classmethod
    def for_kind(
        cls,
        kind: WebserverKind,
        test_command: str | None = None,
        reload_command: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> CommandWebserver:
        """The kind's default commands, each replaced by an override if one is given.

        An override is split like a shell would split it; an empty test override skips the
        test. The `command` kind has no defaults, so it needs a reload command.
        """
        default_test, default_reload = DEFAULT_COMMANDS.get(kind, (None, None))
        test = shlex.split(test_command) if test_command is not None else default_test
        reload = shlex.split(reload_command) if reload_command is not None else default_reload
        if not reload:
            raise ValueError(f"webserver kind {kind} needs a reload command")
        return cls(test, reload, timeout)

    def test(self) -> CommandResult:
        if self.test_command is None:
            return CommandResult(True, "no configuration test configured")
        return self._run(self.test_command)

    def reload(self) -> CommandResult:
        return self._run(self.reload_command)

    def _run(self, command: Sequence[str]) -> CommandResult:
        shown = shlex.join(command)
        try:
            # Commands the node's administrator configured, run without a shell.
            result = subprocess.run(  # noqa: S603
                list(command),
                capture_output=True,
                text=True,
                errors="replace",
                timeout=self._timeout,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            return CommandResult(False, f"`{shown}` did not finish within {self._timeout:.0f} s")
        except OSError as error:
            return CommandResult(False, f"`{shown}` could not run: {error}")
        if result.returncode == 0:
            return CommandResult(True, f"`{shown}` succeeded")
        output = (result.stderr.strip() or result.stdout.strip())[-MAX_OUTPUT_CHARACTERS:]
        return CommandResult(False, f"`{shown}` exited with {result.returncode}: {output}")


class SignalledWebserver:
    """The configuration test by command; the reload by a signal to the pid in `pid_file`."""

    def __init__(self, commands: CommandWebserver, pid_file: Path, signum: signal.Signals) -> None:
        self._commands = commands
        self.pid_file = pid_file
        self.signal = signum
        self.test_command = commands.test_command

    def test(self) -> CommandResult:
        return self._commands.test()

    def reload(self) -> CommandResult:
        what = f"{self.signal.name} to the pid in {self.pid_file}"
        try:
            with open(self.pid_file, "rb") as file:
                text = file.read(_PID_FILE_LIMIT + 1).decode("ascii", errors="replace").strip()
        except OSError as error:
            return CommandResult(False, f"{what}: cannot read the pid file: {error.strerror}")
        if not text.isdigit() or int(text) <= 1 or len(text) > 10:
            return CommandResult(False, f"{what}: the pid file holds no pid")
        try:
            os.kill(int(text), self.signal)
        except OSError as error:
            return CommandResult(False, f"{what} ({text}) failed: {error.strerror}")
        return CommandResult(True, f"sent {what} ({text})")


def webserver_for_kind(
    kind: WebserverKind,
    test_command: str | None = None,
    reload_command: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    *,
    pid_file: Path | None = None,
) -> CommandWebserver | SignalledWebserver:
    """CommandWebserver.for_kind, or with `pid_file` the kind's reload signal to that pid."""
    if pid_file is None:
        return CommandWebserver.for_kind(kind, test_command, reload_command, timeout)
    if reload_command is not None:
        raise ValueError("give a reload command or a pid file, not both")
    if kind not in RELOAD_SIGNALS:
        raise ValueError(f"webserver kind {kind} has no reload signal; give a reload command")
    default_test = DEFAULT_COMMANDS[kind][0]
    test = shlex.split(test_command) if test_command is not None else default_test
    commands = CommandWebserver(test, ("true",), timeout)  # only its test is used
    return SignalledWebserver(commands, pid_file, RELOAD_SIGNALS[kind])
