"""`certfleet agent`'s configuration: flags, environment variables and their validation."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from certfleet.agent.config import AgentConfigError, config_from_args
from certfleet.agent.webserver import CommandWebserver, SignalledWebserver
from certfleet.datastore import DatastoreLocation, MasterKey

from .flags import MASTER, parse, required

pytestmark = pytest.mark.usefixtures("clean_environment")


def test_flags_make_a_configuration(key_file: Path, tmp_path: Path) -> None:
    config = config_from_args(
        parse(
            *required(key_file),
            "--s3-endpoint=http://127.0.0.1:9000",
            "--s3-prefix=/certfleet/prod/",
            f"--cert-root={tmp_path}",
            "--test-command=/usr/sbin/nginx -p /srv/nginx -t -q",
            "--reload-command=/usr/sbin/nginx -p /srv/nginx -s reload",
            "--probe-address=127.0.0.1:8443",
            "--poll-interval=0.5",
            "--node-name=node-a",
        )
    )
    assert config.location == DatastoreLocation(
        "fleet-bucket", "certfleet/prod", "sandbox", "build-1", "www.example.com"
    )
    assert config.master_keys[0].key_id == MasterKey(MASTER).key_id
    assert isinstance(config.webserver, CommandWebserver)
    assert config.webserver.test_command == ("/usr/sbin/nginx", "-p", "/srv/nginx", "-t", "-q")
    assert config.webserver.reload_command[-2:] == ("-s", "reload")
    assert config.probe is not None
    assert (config.probe.host, config.probe.port, config.probe.server_name) == (
        "127.0.0.1",
        8443,
        "www.example.com",
    )
    assert config.settings.poll_interval == 0.5
    assert config.settings.node == "node-a"
    assert config.cert_root == tmp_path
    assert config.certificate is None and config.metrics == ("0.0.0.0", 9477)


def test_environment_variables_are_the_defaults(
    key_file: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CERTFLEET_S3_BUCKET", "env-bucket")
    monkeypatch.setenv("CERTFLEET_CLOUDHOST", "aws-eu")
    monkeypatch.setenv("CERTFLEET_BUILD_IDENTIFIER", "b7")
    monkeypatch.setenv("WEBSITE_URL", "shop.example.com")
    monkeypatch.setenv("CERTFLEET_MASTER_KEY_FILE", f"{key_file}{os.pathsep}{key_file}")
    monkeypatch.setenv("NODE_NAME", "worker-3")
    monkeypatch.setenv("CERTFLEET_WEBSERVER", "apache2")
    monkeypatch.setenv("CERTFLEET_POLL_INTERVAL", "15")
    monkeypatch.setenv("CERTFLEET_CERTIFICATE_NAMESPACE", "shop")
    monkeypatch.setenv("CERTFLEET_CERTIFICATE_NAME", "shop-cert")
    monkeypatch.setenv("CERTFLEET_METRICS_PORT", "0")
    monkeypatch.setenv("HOME", str(tmp_path))
    config = config_from_args(parse())
    assert config.location.bucket == "env-bucket"
    assert config.location.domain == "shop.example.com"
    assert len(config.master_keys) == 2
    assert config.settings.node == "worker-3"
    assert config.settings.poll_interval == 15
    assert isinstance(config.webserver, CommandWebserver)
    assert config.webserver.test_command == ("apachectl", "configtest")
    assert config.webserver.reload_command == ("apachectl", "graceful")
    assert config.certificate == ("shop", "shop-cert")
    assert config.metrics is None
    # A flag wins over its variable.
    assert config_from_args(parse("--s3-bucket=flag-bucket")).location.bucket == "flag-bucket"


def test_the_default_root_is_ssl_live_in_home(
    key_file: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert config_from_args(parse(*required(key_file))).cert_root == tmp_path / "ssl" / "live"


@pytest.mark.parametrize(
    ("drop", "message"),
    [
        ("--s3-bucket", "--s3-bucket is required"),
        ("--domain", "--domain"),
        ("--master-key-file", "--master-key-file is required"),
        ("--cloudhost", "--cloudhost is required"),
    ],
)
def test_a_missing_setting_is_named(key_file: Path, drop: str, message: str) -> None:
    argv = [arg for arg in required(key_file) if not arg.startswith(drop)]
    with pytest.raises(AgentConfigError, match=message):
        config_from_args(parse(*argv))


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--domain=../../etc", "--domain"),
        ("--domain=10.0.0.1", "--domain"),
        ("--cloudhost=../other", "cloudhost"),
        ("--node-name=bad/name", "--node-name"),
        ("--poll-interval=0", "--poll-interval must be positive"),
        ("--probe-address=nonsense", "--probe-address"),
        ("--certificate-name=orphan", "--certificate-namespace is required"),
    ],
)
def test_an_invalid_setting_is_refused(key_file: Path, flag: str, message: str) -> None:
    with pytest.raises(AgentConfigError, match=message):
        config_from_args(parse(*required(key_file), flag))


def test_a_master_key_of_the_wrong_length_is_refused_without_showing_it(
    key_file: Path, tmp_path: Path
) -> None:
    short = tmp_path / "short.key"
    short.write_bytes(b"0123456789abcdef")
    with pytest.raises(AgentConfigError, match="holds 16 bytes, not 32") as raised:
        config_from_args(parse(*required(key_file), f"--master-key-file={short}"))
    assert "0123456789abcdef" not in str(raised.value)


def test_credentials_come_from_files_and_stay_out_of_the_repr(
    key_file: Path, tmp_path: Path
) -> None:
    (tmp_path / "id").write_text("AKIDEXAMPLE\n")
    (tmp_path / "secret").write_text("s3cr3t-value\n")
    config = config_from_args(
        parse(
            *required(key_file),
            f"--access-key-id-file={tmp_path / 'id'}",
            f"--secret-access-key-file={tmp_path / 'secret'}",
        )
    )
    assert (config.access_key_id, config.secret_access_key) == ("AKIDEXAMPLE", "s3cr3t-value")
    assert "s3cr3t" not in repr(config)
    assert MASTER.hex() not in repr(config)


def test_the_watch_hint_needs_a_managed_certificate_and_a_loop(key_file: Path) -> None:
    assert config_from_args(parse(*required(key_file))).watch is False
    named = (*required(key_file), "--certificate-namespace=shop", "--certificate-name=web")
    assert config_from_args(parse(*named)).watch is True
    assert config_from_args(parse(*named, "--no-watch")).watch is False
    assert config_from_args(parse(*named, "--once")).watch is False


def test_the_init_step_needs_no_webserver_and_no_probe(key_file: Path) -> None:
    config = config_from_args(parse(*required(key_file), "--once", "--no-reload"))
    assert (config.webserver, config.probe, config.once) == (None, None, True)
    assert config.settings.reload is False


def test_the_command_kind_needs_a_reload_command(key_file: Path) -> None:
    with pytest.raises(AgentConfigError, match="needs a reload command"):
        config_from_args(parse(*required(key_file), "--webserver=command"))
    config = config_from_args(
        parse(
            *required(key_file),
            "--webserver=command",
            "--reload-command=systemctl reload lighttpd",
            "--probe-address=none",
        )
    )
    assert isinstance(config.webserver, CommandWebserver)
    assert config.webserver.test_command is None
    assert config.probe is None


def test_a_wildcard_is_probed_with_a_concrete_name(key_file: Path) -> None:
    argv = [a for a in required(key_file) if not a.startswith("--domain")]
    config = config_from_args(parse(*argv, "--domain=*.example.com"))
    assert config.probe is not None and config.probe.server_name == "certfleet-probe.example.com"


def test_a_bad_number_in_the_environment_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CERTFLEET_POLL_INTERVAL", "soon")
    with pytest.raises(SystemExit) as exited:
        parse()
    assert exited.value.code == 2
    assert "--poll-interval" in capsys.readouterr().err


def test_several_domains_make_one_certificate_each(key_file: Path) -> None:
    argv = [a for a in required(key_file) if not a.startswith("--domain")]
    config = config_from_args(
        parse(*argv, "--domain=www.example.com", "--domain=auth.example.com,proxy.example.com")
    )
    domains = [each.location.domain for each in config.certificates]
    assert domains == ["www.example.com", "auth.example.com", "proxy.example.com"]
    assert [each.probe.server_name for each in config.certificates if each.probe] == domains


def test_the_domains_variable_lists_several(
    key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CERTFLEET_DOMAINS", "a.example.com, b.example.com")
    argv = [a for a in required(key_file) if not a.startswith("--domain")]
    config = config_from_args(parse(*argv))
    assert [each.location.domain for each in config.certificates] == [
        "a.example.com",
        "b.example.com",
    ]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--domain=a.example.com", "--domain=A.example.com"], "listed twice"),
        (
            ["--domain=a.example.com", "--domain=b.example.com", "--probe-server-name=x"],
            "--probe-server-name",
        ),
        (
            [
                "--domain=a.example.com",
                "--domain=b.example.com",
                "--certificate-namespace=shop",
                "--certificate-name=only-one",
            ],
            "one per domain",
        ),
    ],
)
def test_several_domains_are_validated(key_file: Path, flags: list[str], message: str) -> None:
    argv = [a for a in required(key_file) if not a.startswith("--domain")]
    with pytest.raises(AgentConfigError, match=message):
        config_from_args(parse(*argv, *flags))


def test_each_domain_reports_to_its_own_managed_certificate(key_file: Path) -> None:
    argv = [a for a in required(key_file) if not a.startswith("--domain")]
    config = config_from_args(
        parse(
            *argv,
            "--domain=a.example.com",
            "--domain=b.example.com",
            "--certificate-namespace=shop",
            "--certificate-name=site,auth",
        )
    )
    assert [each.report_to for each in config.certificates] == [("shop", "site"), ("shop", "auth")]


def test_file_owner_group_and_modes(key_file: Path) -> None:
    config = config_from_args(
        parse(*required(key_file), "--file-group=0", "--file-mode=0640", "--dir-mode=0750")
    )
    assert (config.file_modes.group, config.file_modes.owner) == (0, None)
    assert (config.file_modes.key_file, config.file_modes.directory) == (0o640, 0o750)
    default = config_from_args(parse(*required(key_file))).file_modes
    assert (default.key_file, default.directory, default.chown) == (0o600, 0o700, False)


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--file-mode=0644", "key file mode"),
        ("--file-mode=rw", "octal"),
        ("--dir-mode=0777", "folder mode"),
        ("--file-group=no-such-group-certfleet", "no such user or group"),
    ],
)
def test_unsafe_or_unknown_file_settings_are_refused(
    key_file: Path, flag: str, message: str
) -> None:
    with pytest.raises(AgentConfigError, match=message):
        config_from_args(parse(*required(key_file), flag))


def test_haproxy_gets_a_combined_pem_and_its_commands(key_file: Path) -> None:
    config = config_from_args(parse(*required(key_file), "--webserver=haproxy"))
    assert config.combined_pem is True
    assert isinstance(config.webserver, CommandWebserver)
    assert config.webserver.test_command == (
        "haproxy",
        "-c",
        "-q",
        "-f",
        "/etc/haproxy/haproxy.cfg",
    )
    assert config_from_args(parse(*required(key_file))).combined_pem is False


def test_a_pid_file_reloads_by_the_kinds_signal(key_file: Path, tmp_path: Path) -> None:
    config = config_from_args(
        parse(*required(key_file), "--webserver=lighttpd", f"--webserver-pid-file={tmp_path}/p")
    )
    assert isinstance(config.webserver, SignalledWebserver)
    assert config.webserver.signal is signal.SIGUSR1
    assert config.webserver.test_command == (
        "lighttpd",
        "-tt",
        "-f",
        "/etc/lighttpd/lighttpd.conf",
    )


def _three_domains(key_file: Path) -> list[str]:
    argv = [a for a in required(key_file) if not a.startswith("--domain")]
    return [*argv, "--domain=www.example.com,auth.example.com,static.example.com"]


def test_several_webservers_each_serve_their_domains(key_file: Path, tmp_path: Path) -> None:
    config = config_from_args(
        parse(
            *_three_domains(key_file),
            "--probe-address=127.0.0.1:443",
            "--webserver=nginx domains=www.example.com",
            "--webserver=apache2 domains=Auth.Example.com probe=127.0.0.1:8443",
            f"--webserver=lighttpd domains=static.example.com pid-file={tmp_path}/l.pid "
            "test='lighttpd -tt -f /srv/l.conf'",
        )
    )
    assert [(each.name, each.domains) for each in config.webservers] == [
        ("nginx", ("www.example.com",)),
        ("apache2", ("auth.example.com",)),
        ("lighttpd", ("static.example.com",)),
    ]
    assert [each.webserver for each in config.certificates] == ["nginx", "apache2", "lighttpd"]
    ports = [each.probe.port for each in config.certificates if each.probe]
    assert ports == [443, 8443, 443]
    nginx, apache, lighttpd = (each.webserver for each in config.webservers)
    assert isinstance(nginx, CommandWebserver) and nginx.reload_command == ("nginx", "-s", "reload")
    assert isinstance(apache, CommandWebserver) and apache.test_command == (
        "apachectl",
        "configtest",
    )
    assert isinstance(lighttpd, SignalledWebserver)
    assert lighttpd.test_command == ("lighttpd", "-tt", "-f", "/srv/l.conf")
    assert lighttpd.pid_file == tmp_path / "l.pid"


def test_the_webservers_variable_separates_them_by_semicolons(
    key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "CERTFLEET_WEBSERVER",
        "haproxy domains=www.example.com,auth.example.com reload='systemctl reload haproxy;x';"
        " nginx domains=static.example.com",
    )
    config = config_from_args(parse(*_three_domains(key_file)))
    haproxy, nginx = config.webservers
    assert haproxy.domains == ("www.example.com", "auth.example.com")
    assert isinstance(haproxy.webserver, CommandWebserver)
    assert haproxy.webserver.reload_command == ("systemctl", "reload", "haproxy;x")
    assert nginx.domains == ("static.example.com",)
    # haproxy's certificates get combined.pem; nginx's not.
    assert [each.combined_pem for each in config.certificates] == [True, True, False]


def test_the_init_step_keeps_the_webservers_domains_for_combined_pem(key_file: Path) -> None:
    config = config_from_args(
        parse(
            *_three_domains(key_file),
            "--once",
            "--no-reload",
            "--webserver=haproxy domains=www.example.com",
            "--webserver=nginx domains=auth.example.com,static.example.com",
        )
    )
    assert [each.webserver for each in config.webservers] == [None, None]
    assert [each.combined_pem for each in config.certificates] == [True, False, False]
    assert [each.probe for each in config.certificates] == [None, None, None]


@pytest.mark.parametrize(
    ("webservers", "message"),
    [
        (["nginx domains=www.example.com", "apache2"], "each names its domains="),
        (
            ["nginx domains=www.example.com,auth.example.com", "nginx domains=auth.example.com"],
            "served by nginx and by nginx-2",
        ),
        (["nginx domains=www.example.com", "apache2 domains=auth.example.com"], "no webserver"),
        (["nginx domains=other.example.com"], "not one of the certificates"),
        (["caddy"], "unknown kind 'caddy'"),
        (["nginx colour=blue"], "unknown key 'colour'"),
        (["nginx probe=a probe=b"], "given twice"),
        (["nginx stray"], "not KEY=VALUE"),
        (["nginx test='unclosed"], "No closing quotation"),
        (["nginx domains=../etc"], "domains="),
    ],
)
def test_bad_webservers_are_refused(key_file: Path, webservers: list[str], message: str) -> None:
    flags = [f"--webserver={each}" for each in webservers]
    with pytest.raises(AgentConfigError, match=message):
        config_from_args(parse(*_three_domains(key_file), *flags))


def test_the_command_flags_are_ambiguous_with_several_webservers(key_file: Path) -> None:
    with pytest.raises(AgentConfigError, match="give each its own reload= instead"):
        config_from_args(
            parse(
                *_three_domains(key_file),
                "--reload-command=true",
                "--webserver=nginx domains=www.example.com",
                "--webserver=apache2 domains=auth.example.com,static.example.com",
            )
        )


def test_one_webserver_with_keys_serves_every_domain(key_file: Path) -> None:
    config = config_from_args(
        parse(*_three_domains(key_file), "--webserver=kind=apache2 probe=none", "--test-command=")
    )
    (apache,) = config.webservers
    assert apache.domains == ("www.example.com", "auth.example.com", "static.example.com")
    assert isinstance(apache.webserver, CommandWebserver) and apache.webserver.test_command is None
    assert config.probe is None
