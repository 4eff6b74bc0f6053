"""The command line: its logging (--verbose opens certfleet's own loggers, never the client
libraries': the Kubernetes client logs response bodies, Secrets included, at DEBUG) and the
parsing of `certfleet reconcile`."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from certfleet.cli import _parser, configure_logging, main

LIBRARIES = ("kubernetes.client.rest", "urllib3.connectionpool", "botocore.endpoint", "kopf")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    ours = logging.getLogger("certfleet").level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("certfleet").setLevel(ours)


@pytest.mark.parametrize("verbose", [False, True])
def test_client_libraries_never_log_bodies(verbose: bool) -> None:
    configure_logging(verbose)
    for name in LIBRARIES:
        assert not logging.getLogger(name).isEnabledFor(logging.DEBUG), name


def test_verbose_is_for_certfleet_itself() -> None:
    configure_logging(False)
    assert not logging.getLogger("certfleet.controller.act").isEnabledFor(logging.DEBUG)
    configure_logging(True)
    assert logging.getLogger("certfleet.controller.act").isEnabledFor(logging.DEBUG)
    assert logging.getLogger("certfleet.agent.loop").isEnabledFor(logging.DEBUG)


def test_reconcile_logs_warnings_only_unless_verbose() -> None:
    """A cron job mails whatever it prints: a good run must print nothing on stderr."""
    configure_logging(False, quiet=True)
    assert not logging.getLogger("certfleet.acme_issuer.http01").isEnabledFor(logging.INFO)
    assert logging.getLogger("certfleet.controller.reconcile").isEnabledFor(logging.WARNING)
    configure_logging(True, quiet=True)
    assert logging.getLogger("certfleet.buildmachine.main").isEnabledFor(logging.DEBUG)


def test_reconcile_parses_its_files_and_folders(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERTFLEET_RUNTIMEDATA", "/srv/toolkit/runtimedata")
    args = _parser().parse_args(
        ["reconcile", "-f", "a.yaml", "--filename", "b.yaml", "--http01-listen", "127.0.0.1:9"]
    )
    assert args.files == [Path("a.yaml"), Path("b.yaml")]
    assert args.runtimedata == Path("/srv/toolkit/runtimedata")
    assert args.http01_listen == ("127.0.0.1", 9)
    assert args.manual_dir is None and args.metrics_textfile is None
    assert args.owner == "default"  # shared by every build machine not told otherwise


def test_reconcile_takes_the_fleets_owner_name_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CERTFLEET_OWNER", "prod-fleet")
    assert _parser().parse_args(["reconcile", "-f", "a.yaml"]).owner == "prod-fleet"
    given = ["reconcile", "-f", "a.yaml", "--owner", "staging"]
    assert _parser().parse_args(given).owner == "staging"


@pytest.mark.parametrize(
    "argv",
    [["reconcile"], ["reconcile", "-f", "a.yaml", "--http01-listen", "nowhere"]],
)
def test_reconcile_refuses_missing_files_and_bad_addresses(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        _parser().parse_args(argv)
    assert exited.value.code == 2
    assert "certfleet reconcile: error:" in capsys.readouterr().err


def test_reconcile_runs_and_exits_with_its_code(tmp_path: Path) -> None:
    """Through main(): a file that is not there is exit 2, said in one line."""
    assert main(["reconcile", "-f", str(tmp_path / "absent.yaml")]) == 2
