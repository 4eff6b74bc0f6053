"""The benchmark's test bed: the real servers of tests/testbed, started once for every figure,
with the counters of bench/counters.py on (an audit log on kube-apiserver, an access log on
versitygw) and pebble's own CA able to sign the certificates published before a cold start."""

from __future__ import annotations

import os
import urllib.request
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bench.counters import AUDIT_POLICY, AuditLog, S3AccessLog, Tally
from bench.kube_api import BENCH_USER, KubeApi
from certfleet.acme_issuer.http01 import ChallengeStore, Http01Server
from certfleet.core.facts import certificate_facts
from certfleet.datastore.encryption import MasterKey
from certfleet.datastore.location import DatastoreLocation
from certfleet.datastore.s3_store import S3Datastore
from testbed.acme_ca import AcmeCA
from testbed.certfleet_install import CertfleetInstall, load_example
from testbed.control_plane import ControlPlane
from testbed.processes import ServerProcess
from testbed.s3 import S3Server
from testbed.webserver import Nginx

CLOUDHOST = "bench"
PREFIX = "certfleet"
BUILD = "build-1"
LEASE_SECONDS = 15.0
ADMIN_USER = "testbed-admin"  # the operator runs with the test bed's admin kubeconfig

# pebble validates HTTP-01 on one port: the operator answers its own tokens, and what it does
# not know (404) falls through to the benchmark's responder, for the protocol floor's orders.
_CHALLENGE_SITE = """\
location /.well-known/acme-challenge/ {{
            proxy_pass http://127.0.0.1:{operator};
            proxy_intercept_errors on;
            error_page 404 = @bench;
        }}
        location @bench {{ proxy_pass http://127.0.0.1:{bench}; }}
        location / {{ return 200 "plain http\\n"; }}"""


class ProcessStats:
    """CPU seconds and peak RSS of a process, from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no VmHWM for {self.pid}")


class PebbleSigner:
    """Leaves signed by pebble's own intermediate (its management API hands out the key), so
    they chain to pebble's root as the certificates it issues do: what a datastore holds after
    an earlier run, without N orders to make them."""

    def __init__(self, ca: AcmeCA) -> None:
        self.intermediate_pem = self._get(ca, "/intermediates/0")
        self.intermediate = x509.load_pem_x509_certificate(self.intermediate_pem)
        key = serialization.load_pem_private_key(self._get(ca, "/intermediate-keys/0"), None)
        self.key: CertificateIssuerPrivateKeyTypes = key  # type: ignore[assignment]

    @staticmethod
    def _get(ca: AcmeCA, path: str) -> bytes:
        with urllib.request.urlopen(  # noqa: S310 - pebble's https management URL
            ca.management_url + path, context=ca.ssl_context(), timeout=10
        ) as answer:
            return bytes(answer.read())

    def leaf(self, domain: str, days_old: float = 1) -> tuple[bytes, bytes, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        start = datetime.now(UTC) - timedelta(days=days_old)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)]))
            .issuer_name(self.intermediate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        fullchain = certificate.public_bytes(serialization.Encoding.PEM) + self.intermediate_pem
        privkey = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return fullchain, privkey, certificate


class Bed:
    """Every server, started in order and stopped in reverse, whatever fails."""

    def __init__(self, workdir: Path, s3_keep_alive: bool = True) -> None:
        self.workdir = workdir
        self._stack = ExitStack()
        audit_policy = workdir / "audit-policy.yaml"
        workdir.mkdir(parents=True, exist_ok=True)
        audit_policy.write_text(AUDIT_POLICY)
        self.audit = AuditLog(workdir / "audit.log")
        self.plane = ControlPlane(
            workdir / "control-plane",
            extra_apiserver_args=[
                f"--audit-policy-file={audit_policy}",
                f"--audit-log-path={self.audit.path}",
                "--audit-log-maxsize=0",
            ],
        )
        self.s3_access = S3AccessLog(workdir / "s3-access.log")
        self.s3 = S3Server(workdir / "s3", access_log=self.s3_access.path, keep_alive=s3_keep_alive)
        self.ca = AcmeCA(workdir / "acme")
        self.challenges = ChallengeStore()

    def __enter__(self) -> Bed:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stack.close()

    def _start(self) -> None:
        enter = self._stack.enter_context
        enter(self.plane)
        enter(self.s3)
        enter(self.ca)
        self.responder = enter(Http01Server(self.challenges, "127.0.0.1", 0))
        self.install = CertfleetInstall(self.plane, self.workdir / "certfleet")
        self.install.install_crds()
        self.bucket = self.s3.endpoint.new_bucket()
        # pebble's root is new at each start, and no public root: the CloudHost names it.
        self.master_key = self.install.create_cloudhost(
            CLOUDHOST, self.s3.endpoint, self.bucket, trust_bundle=self.ca.issuing_roots_pem()
        )
        site = _CHALLENGE_SITE.format(operator=self.install.http01_port, bench=self.responder.port)
        enter(
            Nginx(
                self.workdir / "nginx",
                self.workdir / "nginx" / "ssl",
                http_port=self.ca.http_port,
                http_site=site,
            )
        )
        self._stack.callback(self.install.stop_operator)
        self.api = KubeApi(self.plane)
        self.signer = PebbleSigner(self.ca)
        self.store = S3Datastore(self.s3.endpoint.client(), [MasterKey(self.master_key)])

    def location(self, domain: str) -> DatastoreLocation:
        return DatastoreLocation(self.bucket, PREFIX, CLOUDHOST, BUILD, domain)

    def publish(self, domain: str, days_old: float = 1) -> tuple[x509.Certificate, int]:
        """A valid certificate for `domain`, published by certfleet's own datastore code;
        returns it and its revision."""
        fullchain, privkey, leaf = self.signer.leaf(domain, days_old)
        current = self.store.read_current(self.location(domain))
        pointer = self.store.publish(
            self.location(domain),
            fullchain,
            privkey,
            serial=certificate_facts(leaf).serial,
            not_before=leaf.not_valid_before_utc,
            not_after=leaf.not_valid_after_utc,
            expected_pointer_etag=current.pointer_etag if current else None,
        )
        return leaf, pointer.revision

    def namespace(self, name: str) -> None:
        self.api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def automatic(self, namespace: str, name: str, domain: str) -> dict[str, Any]:
        resource = load_example("automatic.yaml")
        resource["metadata"] = {"name": name, "namespace": namespace}
        resource["spec"].update(domain=domain, cloudhost=CLOUDHOST, buildIdentifier=BUILD)
        resource["spec"]["acme"]["server"] = self.ca.directory_url
        return resource

    def start_operator(self, *args: str) -> ServerProcess:
        # The operator's default Lease (15 s), not the test bed's 6 s (quick fail-over for the
        # e2e tests): a cold start of 1,000 kept the renewal from running for 2.7 s, and the
        # operator stopped.
        return self.install.start_operator(self.ca, f"--lease-seconds={LEASE_SECONDS:g}", *args)

    # What the operator asked of the API server and of S3, since a mark.
    def marks(self) -> tuple[int, int]:
        return self.audit.mark(), self.s3_access.mark()

    def operator_requests(self, marks: tuple[int, int]) -> tuple[Tally, Tally]:
        api = self.audit.tally(marks[0], ADMIN_USER, exclude_agents=("kubectl",))
        s3 = self.s3_access.tally(marks[1], {self.s3.endpoint.access_key})
        return api, s3


__all__ = ["BENCH_USER", "Bed", "ProcessStats"]
