"""A build machine on the test bed: `certfleet reconcile -f` as a real process, with its own
runtimedata folder, secrets folder and HTTP-01 port, against the test bed's S3 and pebble."""

from __future__ import annotations

import copy
import itertools
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from certfleet.core.leases import StorageLease
from certfleet.datastore.encryption import MasterKey
from certfleet.datastore.lease import lease_key, lease_to_json
from certfleet.datastore.location import DatastoreLocation
from certfleet.datastore.protocol import StoredCertificate
from certfleet.datastore.s3_store import S3Datastore
from e2e.certificates import ManualCA
from testbed.acme_ca import AcmeCA
from testbed.certfleet_install import REPO
from testbed.processes import free_port
from testbed.s3 import S3Bucket

EXAMPLE = REPO / "examples" / "build-machine" / "certificates.yaml"
CERTFLEET = Path(sys.executable).parent / "certfleet"
RUN_TIMEOUT_SECONDS = 120


def example_documents() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d]


def challenge_site(*ports: int) -> str:
    """nginx's plain-HTTP server for several build machines: each answers 404 for a token it
    did not ask for (502 when it is not running), and nginx then asks the next, as a fleet's
    proxy in front of them would."""
    locations, names = [], [f"@machine{i}" for i in range(1, len(ports))]
    for index, port in enumerate(ports):
        fallback = (
            f"proxy_intercept_errors on; error_page 404 502 = {names[index]};"
            if index < len(names)
            else ""
        )
        where = "/.well-known/acme-challenge/" if index == 0 else names[index - 1]
        locations.append(f"location {where} {{ proxy_pass http://127.0.0.1:{port}; {fallback} }}")
    return "\n        ".join([*locations, 'location / { return 200 "plain http\\n"; }'])


class Run:
    """A `certfleet reconcile` started in the background."""

    def __init__(self, command: list[str], stem: Path) -> None:
        self.stdout_path, self.stderr_path = stem.with_suffix(".out"), stem.with_suffix(".err")
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(command, stdout=out, stderr=err)

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def wait(self) -> int:
        return self.process.wait(timeout=RUN_TIMEOUT_SECONDS)


class Datastore:
    """The test's view of the bucket: what the build machines published."""

    def __init__(self, bucket: S3Bucket, master_key: bytes) -> None:
        self.bucket = bucket
        self.master_key = master_key

    def stored(self, domain: str, cloudhost: str = "prod") -> StoredCertificate | None:
        store = S3Datastore(self.bucket.endpoint.client(), [MasterKey(self.master_key)])
        location = DatastoreLocation(self.bucket.name, "certfleet", cloudhost, "build-1", domain)
        return store.read_current(location)

    def hold_lease(self, domain: str, holder: str, released: bool = False) -> None:
        """Write the order lease as another certfleet would (held for ten minutes)."""
        location = DatastoreLocation(self.bucket.name, "certfleet", "prod", "build-1", domain)
        expires = datetime.now(UTC) + timedelta(minutes=10)
        self.bucket.endpoint.client().put_object(
            Bucket=self.bucket.name,
            Key=lease_key(location),
            Body=lease_to_json(StorageLease(holder, expires, released)),
        )

    def keys(self) -> list[str]:
        listed = self.bucket.endpoint.client().list_objects_v2(Bucket=self.bucket.name)
        return [item["Key"] for item in listed.get("Contents", [])]


class BuildMachine:
    def __init__(self, workdir: Path, ca: AcmeCA, datastore: Datastore) -> None:
        self.workdir = workdir
        self.ca = ca
        self.datastore = datastore
        self.runtimedata = workdir / "runtimedata"
        self.secrets = workdir / "secrets"
        self.manual = workdir / "manual"
        self.http01_port = free_port()
        self._runs = itertools.count(1)
        bucket = datastore.bucket
        credentials = self.secrets / "certfleet-system" / "prod-s3-credentials"
        credentials.mkdir(parents=True)
        (credentials / "accessKeyID").write_text(bucket.endpoint.access_key)
        (credentials / "secretAccessKey").write_text(bucket.endpoint.secret_key)
        key = self.secrets / "certfleet-system" / "prod-encryption-key"
        key.mkdir(parents=True)
        (key / "key").write_bytes(datastore.master_key)
        # The CloudHost's spec.trustBundle as a file: pebble's root and the MANUAL CA's.
        self.manual_ca = ManualCA()
        trust = self.secrets / "certfleet-system" / "prod-trust-bundle"
        trust.mkdir(parents=True)
        (trust / "ca.crt").write_bytes(ca.issuing_roots_pem() + self.manual_ca.root_pem)

    def documents(self, **certificates: dict[str, Any]) -> Path:
        """The example's CloudHost on the test bed's S3, and its certificates by name with
        the given spec fields (the ACME server: this test's pebble)."""
        cloudhost, *examples = example_documents()
        cloudhost["spec"].update(
            endpoint=self.datastore.bucket.endpoint.url,
            bucket=self.datastore.bucket.name,
            trustBundle={
                "secretRef": {"namespace": "certfleet-system", "name": "prod-trust-bundle"}
            },
        )
        documents = [cloudhost]
        for example in examples:
            name = example["metadata"]["name"]
            if name in certificates:
                document = copy.deepcopy(example)
                document["spec"].update(certificates[name])
                if "acme" in document["spec"]:
                    document["spec"]["acme"]["server"] = self.ca.directory_url
                documents.append(document)
        path = self.workdir / f"certificates-{len(list(self.workdir.glob('*.yaml')))}.yaml"
        path.write_text(yaml.safe_dump_all(documents))
        return path

    def command(self, *files: Path, extra: tuple[str, ...] = ()) -> list[str]:
        return [
            str(CERTFLEET),
            "reconcile",
            *(f"-f{file}" for file in files),
            f"--runtimedata={self.runtimedata}",
            f"--secrets-dir={self.secrets}",
            f"--manual-dir={self.manual}",
            f"--status-file={self.workdir / 'status.json'}",
            f"--metrics-textfile={self.workdir / 'certfleet.prom'}",
            f"--http01-listen=127.0.0.1:{self.http01_port}",
            f"--acme-ca-bundle={self.ca.listener_ca_bundle}",
            f"--identity=build-machine-{self.http01_port}",
            *extra,
        ]

    def run(self, *files: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*files),
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_SECONDS,
            check=False,
        )

    def start(self, *files: Path) -> Run:
        """In the background: its output goes to files, to be read while it runs."""
        return Run(self.command(*files), self.workdir / f"run-{next(self._runs)}")

    def cache(self, domain: str) -> Path:
        return self.runtimedata / "prod" / "build-1" / "ssl" / domain
