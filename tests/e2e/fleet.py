"""One end-to-end test's certfleet on the test bed: its namespace, CloudHost, ACME CA, the
webserver pebble validates against, and the operator replicas."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from certfleet.datastore.encryption import MasterKey
from certfleet.datastore.location import DatastoreLocation
from certfleet.datastore.protocol import StoredCertificate
from certfleet.datastore.s3_store import S3Datastore
from e2e.certificates import ManualCA
from testbed.acme_ca import AcmeCA
from testbed.certfleet_install import CertfleetInstall, load_example
from testbed.s3 import S3Bucket
from testbed.waiting import wait_for
from testbed.webserver import Nginx


def new_domain() -> str:
    return f"www-{secrets.token_hex(4)}.certfleet.test"


@dataclass
class Fleet:
    install: CertfleetInstall
    ca: AcmeCA
    nginx: Nginx
    bucket: S3Bucket
    namespace: str
    cloudhost: str
    master_key: bytes
    # The CA of the fleet's MANUAL certificates; its root and pebble's are the CloudHost's
    # spec.trustBundle (`trust_bundle`), so both kinds chain to a trusted root.
    manual_ca: ManualCA
    trust_bundle: bytes
    closed: bool = False

    def apply_certificate(self, example: str, name: str, domain: str, **spec: Any) -> None:
        resource = load_example(example)
        resource["metadata"].update(name=name, namespace=self.namespace)
        resource["spec"].update({"domain": domain, "cloudhost": self.cloudhost, **spec})
        if "acme" in resource["spec"]:
            resource["spec"]["acme"]["server"] = self.ca.directory_url
        self.install.apply(resource)

    def location(self, domain: str, build: str = "build-1") -> DatastoreLocation:
        return DatastoreLocation(self.bucket.name, "certfleet", self.cloudhost, build, domain)

    def stored(self, domain: str, build: str = "build-1") -> StoredCertificate | None:
        store = S3Datastore(self.bucket.endpoint.client(), [MasterKey(self.master_key)])
        return store.read_current(self.location(domain, build))

    def wait_published(
        self, domain: str, fullchain: bytes, timeout: float = 30
    ) -> StoredCertificate:
        """Waits until the datastore's current certificate of `domain` is `fullchain`: a
        publication stays, where a status reason such as ManualCertificateAccepted lasts only
        until the next recheck says Reused."""

        def published() -> StoredCertificate | None:
            stored = self.stored(domain)
            return stored if stored is not None and stored.fullchain == fullchain else None

        return wait_for(f"{domain}'s certificate to be published", published, timeout)

    def events(self, name: str) -> list[dict[str, Any]]:
        """The events about the object `name` in the fleet's namespace."""
        found = self.install.control_plane.kubectl(
            "get",
            "events",
            "-n",
            self.namespace,
            f"--field-selector=involvedObject.name={name}",
            "-o",
            "json",
        ).stdout
        items: list[dict[str, Any]] = json.loads(found)["items"]
        return items

    def secret(self, name: str) -> dict[str, Any] | None:
        found = self.install.control_plane.kubectl(
            "get", "secret", name, "-n", self.namespace, "-o", "json", check=False
        )
        return json.loads(found.stdout) if found.returncode == 0 else None

    def close(self) -> None:
        """Once: a test on its own control plane closes its fleet before stopping it."""
        if self.closed:
            return
        self.closed = True
        # Delete while an operator runs (it forgets their timers and series); then stop them.
        if self.install.operator is None or not self.install.operator.alive():
            self.install.start_operator(self.ca)
        self.install.control_plane.kubectl(
            "delete", "mcert", "--all", "-n", self.namespace, "--timeout=30s", check=False
        )
        self.install.stop_operator()
