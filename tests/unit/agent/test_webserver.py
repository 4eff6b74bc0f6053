"""The webserver commands: defaults per kind, overrides, failures with their output, timeouts."""

from __future__ import annotations

from pathlib import Path

import pytest

from certfleet.agent.webserver import CommandWebserver, WebserverKind


def test_nginx_and_apache2_defaults() -> None:
    nginx = CommandWebserver.for_kind(WebserverKind.NGINX)
    assert (nginx.test_command, nginx.reload_command) == (
        ("nginx", "-t", "-q"),
        ("nginx", "-s", "reload"),
    )
    apache = CommandWebserver.for_kind(WebserverKind.APACHE2)
    assert (apache.test_command, apache.reload_command) == (
        ("apachectl", "configtest"),
        ("apachectl", "graceful"),
    )


def test_overrides_are_split_like_a_shell_and_an_empty_test_skips_it(tmp_path: Path) -> None:
    server = CommandWebserver.for_kind(
        WebserverKind.NGINX, test_command="", reload_command=f"touch '{tmp_path}/a file'"
    )
    assert server.test_command is None
    assert server.test().ok
    assert server.reload().ok
    assert (tmp_path / "a file").exists()


def test_a_failing_command_reports_its_exit_status_and_output() -> None:
    server = CommandWebserver(
        ["sh", "-c", "echo 'nginx: [emerg] unknown directive \"brokenx\"' >&2; exit 1"], ["true"]
    )
    result = server.test()
    assert not result.ok
    assert "exited with 1" in result.detail
    assert 'unknown directive "brokenx"' in result.detail


def test_a_command_that_hangs_is_stopped() -> None:
    server = CommandWebserver(None, ["sleep", "5"], timeout=0.2)
    result = server.reload()
    assert not result.ok and "did not finish within" in result.detail


def test_a_missing_program_is_a_failure_not_a_crash() -> None:
    result = CommandWebserver(None, ["/nonexistent/nginx", "-s", "reload"]).reload()
    assert not result.ok and "could not run" in result.detail


def test_the_command_kind_has_no_defaults() -> None:
    with pytest.raises(ValueError, match="needs a reload command"):
        CommandWebserver.for_kind(WebserverKind.COMMAND)


def test_a_pid_file_reload_signals_that_process(tmp_path: Path) -> None:
    import signal
    import subprocess

    from certfleet.agent.webserver import webserver_for_kind

    child = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / "pid").write_text(f"{child.pid}\n")
        server = webserver_for_kind(WebserverKind.HAPROXY, pid_file=tmp_path / "pid")
        result = server.reload()
        assert result.ok, result
        assert child.wait(timeout=5) == -signal.SIGUSR2
    finally:
        child.kill()
    (tmp_path / "pid").write_text("nonsense")
    assert not server.reload().ok
