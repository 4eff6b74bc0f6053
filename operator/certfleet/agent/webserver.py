"""Test the webserver's configuration and reload it gracefully, by running its own commands.

nginx: `nginx -t -q`, then `nginx -s reload` (the master starts new workers with the new files;
old workers finish their connections). apache2: `apachectl configtest`, then `apachectl
graceful`. Anything else (lighttpd, haproxy, a webserver in another container): the `command`
kind with explicit commands. Commands run without a shell; a test command is optional.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

DEFAULT_TIMEOUT_SECONDS = 60.0
# Enough of a failing command's output to say why; its output names files, never their bytes.
MAX_OUTPUT_CHARACTERS = 2000


class WebserverKind(StrEnum):
    NGINX = "nginx"
    APACHE2 = "apache2"
    COMMAND = "command"


DEFAULT_COMMANDS: dict[WebserverKind, tuple[tuple[str, ...], tuple[str, ...]]] = {
    WebserverKind.NGINX: (("nginx", "-t", "-q"), ("nginx", "-s", "reload")),
    WebserverKind.APACHE2: (("apachectl", "configtest"), ("apachectl", "graceful")),
}


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
