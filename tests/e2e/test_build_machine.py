"""certfleet on a build machine, without a control plane: `certfleet reconcile -f` as a real
process against the test bed's S3 (versitygw), pebble, and an nginx that proxies
/.well-known/acme-challenge/ to the build machines."""

from __future__ import annotations

import json
import secrets
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from prometheus_client.parser import text_string_to_metric_families

from e2e.build_machine import (
    RUN_TIMEOUT_SECONDS,
    BuildMachine,
    Datastore,
    Run,
    challenge_site,
)
from e2e.fleet import new_domain
from testbed.acme_ca import AcmeCA
from testbed.s3 import S3Bucket
from testbed.waiting import wait_for
from testbed.webserver import Nginx

pytestmark = pytest.mark.testbed


@pytest.fixture
def datastore(s3_bucket: S3Bucket) -> Datastore:
    return Datastore(s3_bucket, secrets.token_bytes(32))


@pytest.fixture
def machines(
    acme_ca: AcmeCA,
    datastore: Datastore,
    start_nginx: Callable[..., Nginx],
    tmp_path: Path,
) -> tuple[BuildMachine, BuildMachine]:
    """Two build machines sharing one bucket and one CA; the webserver pebble validates
    against proxies challenges to both."""
    first = BuildMachine(tmp_path / "build-a", acme_ca, datastore)
    second = BuildMachine(tmp_path / "build-b", acme_ca, datastore)
    start_nginx(
        http_port=acme_ca.http_port,
        http_site=challenge_site(first.http01_port, second.http01_port),
    )
    return first, second


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def timed(machine: BuildMachine, file: Path) -> tuple[float, str, str, int]:
    started = time.monotonic()
    result = machine.run(file)
    return time.monotonic() - started, result.stdout, result.stderr, result.returncode


def one_issued_one_reused(started: list[Run], acme_ca: AcmeCA) -> None:
    """Both runs end well, one having ordered and the other reusing its certificate."""
    results = [(run.wait(), run.stdout, run.stderr) for run in started]
    for code, _out, err in results:
        assert code == 0, err
    # The last line of each is its outcome; only the orderer said "ordering" before it.
    reasons = sorted(out.splitlines()[-1].split(": ")[1] for _code, out, _err in results)
    assert reasons == ["Issued", "Reused"], results
    assert acme_ca.orders_created() == 1


def test_issues_caches_publishes_then_reuses_with_zero_orders(
    machines: tuple[BuildMachine, BuildMachine], acme_ca: AcmeCA, datastore: Datastore
) -> None:
    machine = machines[0]
    domain = new_domain()
    file = machine.documents(www={"domain": domain})

    seconds, out, err, code = timed(machine, file)
    assert (code, err) == (0, ""), "a good run prints nothing on stderr (cron mails it)"
    assert f"default/www {domain}: Issued:" in out and "verified revision 1" in out
    assert acme_ca.orders_created() == 1

    cache = machine.cache(domain)
    assert mode(cache) == 0o700 and mode(cache.parent) == 0o700
    assert mode(cache / "privkey.pem") == 0o600 and mode(cache / "fullchain.pem") == 0o600
    stored = datastore.stored(domain)  # read back verified: digests, decryption
    assert stored is not None
    assert stored.fullchain == (cache / "fullchain.pem").read_bytes()
    assert stored.privkey == (cache / "privkey.pem").read_bytes()
    leaf = x509.load_pem_x509_certificate(stored.fullchain)
    assert leaf.serial_number == int(stored.pointer.serial, 16)

    status = json.loads((machine.workdir / "status.json").read_text())
    www = status["certificates"]["default/www"]["status"]
    assert www["conditions"][0]["status"] == "True" and www["serialNumber"] == stored.pointer.serial
    metrics = (machine.workdir / "certfleet.prom").read_text()
    samples = {
        (sample.name, sample.labels.get("domain")): sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
    }
    expires = leaf.not_valid_after_utc.timestamp()
    assert samples[("certfleet_certificate_expiration_timestamp_seconds", domain)] == expires
    assert "certfleet_build_machine_last_run_success 1.0" in metrics
    assert "PRIVATE KEY" not in out + err + metrics + json.dumps(status)

    again_seconds, out, err, code = timed(machine, file)
    assert (code, err) == (0, "")
    assert f"default/www {domain}: Reused: reused revision 1" in out
    assert acme_ca.orders_created() == 1, "the second run ordered again"
    print(f"\nreconcile that issues: {seconds:.2f} s; one that reuses: {again_seconds:.2f} s")


def test_a_second_build_machine_reuses_the_datastores_certificate(
    machines: tuple[BuildMachine, BuildMachine], acme_ca: AcmeCA, datastore: Datastore
) -> None:
    first, second = machines
    domain = new_domain()
    assert first.run(first.documents(www={"domain": domain})).returncode == 0

    result = second.run(second.documents(www={"domain": domain}))
    assert result.returncode == 0, result.stderr
    assert "Reused" in result.stdout
    assert acme_ca.orders_created() == 1
    stored = datastore.stored(domain)
    assert stored is not None
    assert (second.cache(domain) / "fullchain.pem").read_bytes() == stored.fullchain


def test_two_build_machines_started_together_place_one_order(
    machines: tuple[BuildMachine, BuildMachine], acme_ca: AcmeCA, datastore: Datastore
) -> None:
    domain = new_domain()
    started = [machine.start(machine.documents(www={"domain": domain})) for machine in machines]
    one_issued_one_reused(started, acme_ca)
    stored = datastore.stored(domain)
    assert stored is not None and stored.pointer.revision == 1
    for machine in machines:
        assert (machine.cache(domain) / "fullchain.pem").read_bytes() == stored.fullchain


def test_two_build_machines_waiting_on_one_lease_race_for_it_and_order_once(
    machines: tuple[BuildMachine, BuildMachine], acme_ca: AcmeCA, datastore: Datastore
) -> None:
    """Both have looked (nothing published) and wait while a third certfleet holds the
    lease; when it gives the lease back without publishing, both want it at once."""
    domain = new_domain()
    datastore.hold_lease(domain, "build-c")
    started = [machine.start(machine.documents(www={"domain": domain})) for machine in machines]
    wait_for(
        lambda: f"both waiting for build-c's lease: {[run.stdout for run in started]}",
        lambda: all("waiting: build-c holds the order lease" in run.stdout for run in started),
        timeout=30,
    )
    assert acme_ca.orders_created() == 0
    datastore.hold_lease(domain, "build-c", released=True)
    one_issued_one_reused(started, acme_ca)


def test_a_manual_certificate_is_taken_from_its_folder(
    machines: tuple[BuildMachine, BuildMachine], acme_ca: AcmeCA, datastore: Datastore
) -> None:
    machine = machines[0]
    domain = new_domain()
    file = machine.documents(auth={"domain": domain})

    waiting = machine.run(file)
    assert waiting.returncode == 1
    assert (
        "FAILED default/auth" in waiting.stderr and "WaitingForManualCertificate" in waiting.stderr
    )
    assert str(machine.manual / "auth-example-tls") in waiting.stderr
    assert datastore.stored(domain) is None

    pair = machine.manual_ca.leaf(domain)
    folder = machine.manual / "auth-example-tls"
    folder.mkdir(parents=True)
    (folder / "fullchain.pem").write_bytes(pair.fullchain)
    (folder / "privkey.pem").write_bytes(pair.key)
    accepted = machine.run(file)
    assert accepted.returncode == 0, accepted.stderr
    assert "ManualCertificateAccepted" in accepted.stdout
    stored = datastore.stored(domain)
    assert stored is not None and stored.fullchain == pair.fullchain
    assert acme_ca.orders_created() == 0


def test_a_bad_file_is_refused_in_one_line_and_nothing_is_published(
    machines: tuple[BuildMachine, BuildMachine], acme_ca: AcmeCA, datastore: Datastore
) -> None:
    machine = machines[0]
    good = new_domain()
    file = machine.documents(www={"domain": good}, auth={"domain": "bad domain"})

    result = machine.run(file)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(file) in lines[0] and "document 3 (ManagedCertificate auth)" in lines[0]
    assert "spec.domain" in lines[0] and "nothing was reconciled" in lines[0]
    assert datastore.keys() == []
    assert acme_ca.orders_created() == 0
    assert not machine.runtimedata.exists()


def test_a_run_inside_the_back_off_of_a_failed_order_places_none(
    machines: tuple[BuildMachine, BuildMachine],
    acme_ca: AcmeCA,
    datastore: Datastore,
    tmp_path: Path,
) -> None:
    # A third build machine whose HTTP-01 responder the webserver does not proxy to: pebble's
    # validation fails, the order with it.
    machine = BuildMachine(tmp_path / "build-unreachable", acme_ca, datastore)
    domain = new_domain()
    file = machine.documents(www={"domain": domain})
    failed = machine.run(file)
    assert failed.returncode == 1, failed.stderr
    assert f"FAILED default/www {domain}: IssuanceFailed" in failed.stderr
    assert acme_ca.orders_created() == 1
    status = json.loads((machine.workdir / "status.json").read_text())["certificates"]
    assert "nextAttempt" in status["default/www"]["issuanceBackoff"]

    # The next cron run, within the back-off (30 s after a first failure): no order, exit 1,
    # one line that says until when.
    held = machine.run(file)
    assert held.returncode == 1
    lines = held.stderr.strip().splitlines()
    assert len(lines) == 1, held.stderr
    assert f"FAILED default/www {domain}: IssuanceFailed: backing off after 1 failed " in lines[0]
    assert "no order placed" in lines[0] and "next attempt at " in lines[0]
    assert acme_ca.orders_created() == 1, "a run inside the back-off ordered"
    assert datastore.stored(domain) is None

    # A person who fixed the cause does not wait.
    retried = subprocess.run(
        machine.command(file, extra=("--retry-now",)),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )
    assert retried.returncode == 1 and "backing off" not in retried.stderr, retried.stderr
    assert acme_ca.orders_created() == 2
    status = json.loads((machine.workdir / "status.json").read_text())["certificates"]
    assert status["default/www"]["status"]["failedIssuanceAttempts"] == 2


@pytest.mark.reliability
def test_a_run_killed_mid_order_resumes_that_order_at_the_next_run(
    machines: tuple[BuildMachine, BuildMachine], acme_ca: AcmeCA, datastore: Datastore
) -> None:
    """SIGKILL the moment the order is saved beside the cache (before or after the CA
    finalises it, whichever comes first): the next cron run carries that order on, with the
    saved key, and places none of its own."""
    machine = machines[0]
    domain = new_domain()
    file = machine.documents(www={"domain": domain})
    cache = machine.cache(domain)
    run = machine.start(file)
    wait_for(
        lambda: f"the order saved in {cache}: {run.stdout} {run.stderr}",
        (cache / "pending-order.json").exists,
        timeout=60,
        # No pause between looks: in each millisecond more the killed run may answer the
        # challenge, and the order goes invalid (2 ms let that happen in one run in four).
        interval=0,
    )
    run.process.kill()
    run.process.wait()
    assert mode(cache / "pending-order.key") == 0o600
    saved_key = (cache / "pending-order.key").read_bytes()

    result = machine.run(file)
    assert result.returncode == 0, result.stderr
    assert f"default/www {domain}: Issued:" in result.stdout
    assert acme_ca.orders_created() == 1, "the next run placed an order of its own"
    assert not (cache / "pending-order.json").exists()
    assert not (cache / "pending-order.key").exists()
    assert (cache / "privkey.pem").read_bytes() == saved_key
    stored = datastore.stored(domain)
    assert stored is not None and stored.privkey == saved_key
    assert "PRIVATE KEY" not in result.stdout + result.stderr
