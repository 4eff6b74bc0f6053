"""examples/vm/agent.env, read as the cron line's shell and the systemd unit read it, makes a
usable agent configuration: three certificates, each with its webserver."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from certfleet.agent.config import config_from_args
from certfleet.agent.webserver import WebserverKind

from .flags import parse

EXAMPLE = Path(__file__).parents[3] / "examples" / "vm" / "agent.env"
pytestmark = pytest.mark.usefixtures("clean_environment")


def test_the_vm_example_configures_three_webservers(
    monkeypatch: pytest.MonkeyPatch, key_file: Path, tmp_path: Path
) -> None:
    for line in EXAMPLE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            (value,) = shlex.split(value)  # the shell's (and systemd's) quoting
            monkeypatch.setenv(name, value)
    # The files it names, here.
    monkeypatch.setenv("CERTFLEET_MASTER_KEY_FILE", str(key_file))
    for name in ("ACCESS_KEY_ID", "SECRET_ACCESS_KEY"):
        (tmp_path / name).write_text("x")
        monkeypatch.setenv(f"CERTFLEET_S3_{name}_FILE", str(tmp_path / name))
    monkeypatch.setenv("CERTFLEET_FILE_GROUP", "0")  # www-data may not exist here
    config = config_from_args(parse("--once"))
    assert [(each.kind, each.domains) for each in config.webservers] == [
        (WebserverKind.NGINX, ("www.example.com",)),
        (WebserverKind.HAPROXY, ("auth.example.com",)),
        (WebserverKind.LIGHTTPD, ("static.example.com",)),
    ]
    probes = [
        (each.probe.server_name, each.probe.port) for each in config.certificates if each.probe
    ]
    assert probes == [
        ("www.example.com", 443),
        ("auth.example.com", 8443),
        ("static.example.com", 9443),
    ]
    assert [each.combined_pem for each in config.certificates] == [False, True, False]
    assert config.file_modes.key_file == 0o640
