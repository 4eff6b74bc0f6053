"""`certfleet agent`'s wiring and exit status: `--once` end to end on moto, configuration errors."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest

from certfleet import cli
from certfleet.agent import main as agent_main
from certfleet.agent.config import AgentConfigError, config_from_args
from certfleet.core.facts import certificate_facts
from certfleet.datastore import DatastoreLocation, MasterKey, S3Datastore

from .flags import MASTER, parse, required
from .pki import DAY, ca_pem, leaf

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.usefixtures("clean_environment")


def test_an_unusable_kubeconfig_is_a_configuration_error(key_file: Path, tmp_path: Path) -> None:
    (tmp_path / "kubeconfig").write_text("not: [a kubeconfig")
    config = config_from_args(
        parse(
            *required(key_file),
            "--certificate-namespace=shop",
            "--certificate-name=web",
            f"--kubeconfig={tmp_path / 'kubeconfig'}",
        )
    )
    with pytest.raises(AgentConfigError, match="status report"):
        agent_main.kubernetes_reporter(config)


def test_once_through_the_cli_installs_and_exits_zero(
    moto_s3: S3Client, key_file: Path, tmp_path: Path
) -> None:
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket="fleet-bucket")
    now = datetime.now(UTC)  # the CLI runs on the real clock
    pair = leaf("www.example.com", not_before=now - DAY, not_after=now + 30 * DAY)
    facts = certificate_facts(pair.certificate)
    location = DatastoreLocation(
        "fleet-bucket", "certfleet", "sandbox", "build-1", facts.dns_names[0]
    )
    S3Datastore(client, [MasterKey(MASTER)]).publish(
        location, pair.fullchain, pair.key, facts.serial, facts.not_before, facts.not_after, None
    )
    marker = tmp_path / "reloaded"
    trust = tmp_path / "roots.pem"
    trust.write_bytes(ca_pem())
    argv = [
        "agent",
        *required(key_file),
        f"--cert-root={tmp_path / 'live'}",
        "--webserver=command",
        "--test-command=true",
        f"--reload-command=touch {marker}",
        "--probe-address=none",
        f"--trust-bundle={trust}",
        "--once",
    ]
    assert cli.main(argv) == 0
    assert (tmp_path / "live" / "www.example.com" / "fullchain.pem").read_bytes() == pair.fullchain
    assert marker.exists()

    # Nothing published for another build: exit 1, nothing installed.
    other = [arg.replace("build-1", "build-2") for arg in argv]
    other = [arg.replace(str(tmp_path / "live"), str(tmp_path / "other")) for arg in other]
    assert cli.main(other) == 1
    assert not (tmp_path / "other" / "www.example.com").exists()


def test_a_configuration_error_exits_two(key_file: Path) -> None:
    assert cli.main(["agent", "--s3-bucket=b", "--once"]) == 2
