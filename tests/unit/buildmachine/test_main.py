"""`certfleet reconcile`'s runs and exit codes, over moto's S3 (no CA is reached: MANUAL
certificates, and an AUTOMATIC one whose order lease another machine holds)."""

from __future__ import annotations

import io
import json
import secrets
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from certfleet.api.names import TAKE_OVER_ANNOTATION as TAKE_OVER
from certfleet.buildmachine.backoff import backoff_entry
from certfleet.buildmachine.main import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNUSABLE,
    BuildMachineSettings,
    run,
)
from certfleet.core.clock import utc_now
from certfleet.core.ownership import LocationOwner
from certfleet.datastore.encryption import MasterKey
from certfleet.datastore.lease import lease_key
from certfleet.datastore.location import DatastoreLocation
from certfleet.datastore.s3_store import S3Datastore
from e2e.certificates import ManualCA

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

BUCKET = "certfleet-unit"
DOMAIN = "shop.example.com"
LOCATION = DatastoreLocation(BUCKET, "certfleet", "prod", "build-1", DOMAIN)


def document(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "certfleet.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }


CLOUDHOST = document(
    "CloudHost",
    "prod",
    {
        "bucket": BUCKET,
        "credentialsSecretRef": {"namespace": "ops", "name": "creds"},
        "encryptionKeySecretRef": {"namespace": "ops", "name": "key"},
        # SECRETS_DIR/ops/trust/ca.crt: the root of the MANUAL certificates' CA.
        "trustBundle": {"secretRef": {"namespace": "ops", "name": "trust"}},
    },
)
COMMON = {"domain": DOMAIN, "cloudhost": "prod", "buildIdentifier": "build-1"}
MANUAL = document(
    "ManagedCertificate",
    "shop",
    {**COMMON, "generationMethod": "MANUAL", "manual": {"secretName": "shop-tls"}},
)
AUTOMATIC = document(
    "ManagedCertificate",
    "www",
    {**COMMON, "generationMethod": "AUTOMATIC", "acme": {"server": "https://ca.invalid/dir"}},
)


class Machine:
    def __init__(self, tmp_path: Path, s3: S3Client) -> None:
        s3.create_bucket(Bucket=BUCKET)
        self.s3 = s3
        self.tmp_path = tmp_path
        self.master_key = secrets.token_bytes(32)
        key = tmp_path / "secrets" / "ops" / "key"
        key.mkdir(parents=True)
        (key / "key").write_bytes(self.master_key)  # no creds folder: the AWS chain (moto's)
        self.ca = ManualCA()
        trust = tmp_path / "secrets" / "ops" / "trust"
        trust.mkdir()
        (trust / "ca.crt").write_bytes(self.ca.root_pem)
        self.store = S3Datastore(s3, [MasterKey(self.master_key)])
        self.out, self.err = io.StringIO(), io.StringIO()

    def settings(self, *documents: dict[str, Any], **options: Any) -> BuildMachineSettings:
        path = self.tmp_path / "certificates.yaml"
        path.write_text(yaml.safe_dump_all(documents))
        return BuildMachineSettings(
            files=(path,),
            runtimedata=self.tmp_path / "runtimedata",
            secrets_dir=self.tmp_path / "secrets",
            metrics_textfile=self.tmp_path / "certfleet.prom",
            http01_listen=("127.0.0.1", 0),
            **options,
        )

    def run(self, *documents: dict[str, Any], **options: Any) -> int:
        self.out, self.err = io.StringIO(), io.StringIO()
        slept: list[float] = []
        code = run(self.settings(*documents, **options), utc_now, slept.append, self.out, self.err)
        self.slept = slept
        return code

    def supply(self, fullchain: bytes, key: bytes) -> None:
        folder = self.tmp_path / "runtimedata" / "manual" / "shop-tls"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "fullchain.pem").write_bytes(fullchain)
        (folder / "privkey.pem").write_bytes(key)


@pytest.fixture
def machine(tmp_path: Path, moto_s3: S3Client) -> Machine:
    return Machine(tmp_path, moto_s3)


def test_all_good_is_exit_0_and_says_a_line_per_certificate(machine: Machine) -> None:
    pair = machine.ca.leaf(DOMAIN)
    machine.supply(pair.fullchain, pair.key)
    assert machine.run(CLOUDHOST, MANUAL) == EXIT_OK
    assert machine.err.getvalue() == ""
    (line,) = machine.out.getvalue().splitlines()
    assert line.startswith(f"default/shop {DOMAIN}: ManualCertificateAccepted: ")
    stored = machine.store.read_current(LOCATION)
    assert stored is not None and stored.fullchain == pair.fullchain
    status = json.loads((machine.tmp_path / "runtimedata" / "certfleet-status.json").read_text())
    assert status["certificates"]["default/shop"]["status"]["serialNumber"] == stored.pointer.serial
    assert (
        "certfleet_build_machine_last_run_success 1.0"
        in (machine.tmp_path / "certfleet.prom").read_text()
    )


def test_a_certificate_that_needs_a_person_is_exit_1_with_one_line_on_stderr(
    machine: Machine,
) -> None:
    assert machine.run(CLOUDHOST, MANUAL) == EXIT_FAILED
    lines = machine.err.getvalue().splitlines()
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith("certfleet reconcile: FAILED default/shop")
    assert "WaitingForManualCertificate" in line and "shop-tls" in line
    assert machine.store.read_current(LOCATION) is None
    assert (
        "certfleet_build_machine_last_run_success 0.0"
        in (machine.tmp_path / "certfleet.prom").read_text()
    )


def test_a_bad_document_is_exit_2_and_nothing_is_published(machine: Machine) -> None:
    pair = machine.ca.leaf(DOMAIN)
    machine.supply(pair.fullchain, pair.key)
    broken = document("ManagedCertificate", "www", {**COMMON, "generationMethod": "SOMETIMES"})
    assert machine.run(CLOUDHOST, MANUAL, broken) == EXIT_UNUSABLE
    lines = machine.err.getvalue().splitlines()
    assert len(lines) == 1, lines
    line = lines[0]
    assert "document 3 (ManagedCertificate www): spec.generationMethod" in line
    assert machine.out.getvalue() == ""
    assert machine.store.read_current(LOCATION) is None


def test_a_missing_master_key_fails_naming_its_file(machine: Machine) -> None:
    (machine.tmp_path / "secrets" / "ops" / "key" / "key").unlink()
    assert machine.run(CLOUDHOST, MANUAL) == EXIT_FAILED
    assert "DatastoreNotConfigured" in machine.err.getvalue()
    assert str(machine.tmp_path / "secrets" / "ops" / "key" / "key") in machine.err.getvalue()


def test_an_order_lease_held_elsewhere_is_waited_for_then_reported(machine: Machine) -> None:
    machine.store.take_lease(LOCATION, "build-b", utc_now(), timedelta(minutes=10))
    assert machine.run(CLOUDHOST, AUTOMATIC, wait_for_other_order_seconds=0.5) == EXIT_FAILED
    assert machine.slept and all(0 < pause <= 1 for pause in machine.slept)
    assert "waiting: build-b holds the order lease" in machine.out.getvalue()
    lines = machine.err.getvalue().splitlines()
    assert len(lines) == 1, lines
    line = lines[0]
    assert "FAILED default/www" in line and "OrderedElsewhere" in line


def test_the_failures_in_a_row_carry_over_to_the_next_run(machine: Machine) -> None:
    status_file = machine.tmp_path / "runtimedata" / "certfleet-status.json"
    status_file.parent.mkdir(parents=True)
    status_file.write_text(
        json.dumps({"certificates": {"default/shop": {"status": {"failedIssuanceAttempts": 3}}}})
    )
    machine.run(CLOUDHOST, MANUAL)
    status = json.loads(status_file.read_text())["certificates"]["default/shop"]["status"]
    assert status["failedIssuanceAttempts"] == 3


def _backing_off(machine: Machine, spec: dict[str, Any], seconds: float) -> Path:
    """The status file a run leaves after a failed order: its back-off for this spec."""
    status_file = machine.tmp_path / "runtimedata" / "certfleet-status.json"
    status_file.parent.mkdir(parents=True, exist_ok=True)
    failed = {
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "IssuanceFailed", "message": "m"}
        ],
        "failedIssuanceAttempts": 2,
    }
    entry = {"status": failed, "issuanceBackoff": backoff_entry(seconds, utc_now(), spec)}
    status_file.write_text(json.dumps({"certificates": {"default/www": entry}}))
    return status_file


def test_a_run_inside_the_back_off_places_no_order_and_says_why(machine: Machine) -> None:
    status_file = _backing_off(machine, AUTOMATIC["spec"], 600)
    assert machine.run(CLOUDHOST, AUTOMATIC) == EXIT_FAILED
    lines = machine.err.getvalue().splitlines()
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith(f"certfleet reconcile: FAILED default/www {DOMAIN}: IssuanceFailed: ")
    assert "backing off after 2 failed issuances in a row" in line and "no order placed" in line
    # Not reconciled at all: no order lease was even taken.
    listed = machine.s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    assert lease_key(LOCATION) not in [item["Key"] for item in listed]
    kept = json.loads(status_file.read_text())["certificates"]["default/www"]
    assert kept["status"]["failedIssuanceAttempts"] == 2 and "issuanceBackoff" in kept


@pytest.mark.parametrize(
    ("spec", "options"),
    [
        ({**AUTOMATIC["spec"], "acme": {"server": "https://other.invalid/dir"}}, {}),
        (AUTOMATIC["spec"], {"retry_now": True}),
    ],
    ids=["a changed spec", "--retry-now"],
)
def test_a_changed_spec_or_retry_now_ends_the_wait(
    machine: Machine, spec: dict[str, Any], options: dict[str, Any]
) -> None:
    _backing_off(machine, AUTOMATIC["spec"], 600)
    # Reconciled this time: it gets as far as the order lease (held elsewhere here, so no CA
    # is reached).
    machine.store.take_lease(LOCATION, "build-b", utc_now(), timedelta(minutes=10))
    www = {**AUTOMATIC, "spec": spec}
    code = machine.run(CLOUDHOST, www, wait_for_other_order_seconds=0, **options)
    assert code == EXIT_FAILED
    assert (
        "OrderedElsewhere" in machine.err.getvalue() and "backing off" not in machine.err.getvalue()
    )


def test_a_passed_back_off_is_reconciled_again(machine: Machine) -> None:
    _backing_off(machine, AUTOMATIC["spec"], -1)
    machine.store.take_lease(LOCATION, "build-b", utc_now(), timedelta(minutes=10))
    assert machine.run(CLOUDHOST, AUTOMATIC, wait_for_other_order_seconds=0) == EXIT_FAILED
    assert "OrderedElsewhere" in machine.err.getvalue()


def test_a_rolled_back_pointer_is_replaced_at_the_next_run_above_the_highest(
    machine: Machine, moto_s3: S3Client
) -> None:
    """The status file is the build machine's memory of the highest revision."""
    pair = machine.ca.leaf(DOMAIN)
    machine.supply(pair.fullchain, pair.key)
    assert machine.run(CLOUDHOST, MANUAL) == EXIT_OK  # revision 1
    old_pointer = moto_s3.get_object(Bucket=BUCKET, Key=LOCATION.pointer_key)["Body"].read()
    stored = machine.store.read_current(LOCATION)
    assert stored is not None
    machine.store.publish(
        LOCATION,
        pair.fullchain,
        pair.key,
        stored.pointer.serial,
        stored.pointer.not_before,
        stored.pointer.not_after,
        stored.pointer_etag,
    )  # revision 2, as another run would
    assert machine.run(CLOUDHOST, MANUAL) == EXIT_OK  # reused: the status says revision 2
    moto_s3.put_object(Bucket=BUCKET, Key=LOCATION.pointer_key, Body=old_pointer)

    assert machine.run(CLOUDHOST, MANUAL) == EXIT_OK
    current = machine.store.read_current(LOCATION)
    assert current is not None and current.pointer.revision == 3
    status_file = machine.tmp_path / "runtimedata" / "certfleet-status.json"
    status = json.loads(status_file.read_text())["certificates"]["default/shop"]["status"]
    assert status["datastore"]["revision"] == 3


def test_build_machines_of_one_fleet_share_an_owner_and_another_fleet_is_refused(
    machine: Machine,
) -> None:
    pair = machine.ca.leaf(DOMAIN)
    machine.supply(pair.fullchain, pair.key)
    assert machine.run(CLOUDHOST, MANUAL, owner="prod-fleet") == EXIT_OK
    claim = machine.store.read_claim(LOCATION)
    assert claim is not None and claim.owner == LocationOwner.build_machines("prod-fleet")
    # Another machine of the same fleet (same --owner, another host) acts on it too.
    assert machine.run(CLOUDHOST, MANUAL, owner="prod-fleet", identity="build machine b") == 0
    assert "Reused" in machine.out.getvalue()
    other = machine.ca.leaf(DOMAIN)
    machine.supply(other.fullchain, other.key)
    assert machine.run(CLOUDHOST, MANUAL, owner="staging") == EXIT_FAILED
    assert "LocationClaimed" in machine.err.getvalue()
    assert "build-machines:prod-fleet" in machine.err.getvalue()
    stored = machine.store.read_current(LOCATION)
    assert stored is not None and stored.fullchain == pair.fullchain
    assert stored.pointer.owner == "BuildMachines:prod-fleet"


def test_a_document_naming_the_owner_takes_its_location_over(machine: Machine) -> None:
    machine.store.claim(LOCATION, LocationOwner.resource("c", "shop", "www", "u"), utc_now(), None)
    pair = machine.ca.leaf(DOMAIN)
    machine.supply(pair.fullchain, pair.key)
    assert machine.run(CLOUDHOST, MANUAL) == EXIT_FAILED  # a cluster's: not without a word
    handed = {**MANUAL, "metadata": {"name": "shop", "annotations": {TAKE_OVER: "shop/www"}}}
    assert machine.run(CLOUDHOST, handed) == EXIT_OK
    claim = machine.store.read_claim(LOCATION)
    assert claim is not None and claim.owner == LocationOwner.build_machines("default")


def test_a_bad_owner_name_is_exit_2(machine: Machine) -> None:
    assert machine.run(CLOUDHOST, MANUAL, owner="a b") == EXIT_UNUSABLE
    assert "--owner" in machine.err.getvalue()
