"""The fleet: nginx instances with a `certfleet agent` process each (the node agent's RBAC,
read-only S3 credentials through a byte-counting proxy), following one certificate.

- convergence: from the pointer published to every instance serving the new serial (verified
  handshakes, 50 ms apart), with the watch hint (the status names the new serial right after
  the publish, as the operator writes it) and without (the agents' poll interval only);
- rotation under load: wrk against 3 of the nginx during 10 rotations, and a verified
  handshake after another against each: failed requests and failed handshakes;
- idle fleet cost: the agents' S3 requests and bytes over a short idle period, scaled to a day
  at the default poll interval.

The benchmark publishes and patches the status itself (the operator is stopped): the time
from the pointer's flip is then known exactly.
"""

from __future__ import annotations

import random
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field

from cryptography import x509

from bench.bed import BUILD, CLOUDHOST, PREFIX, Bed, ProcessStats
from bench.counters import ByteCountingProxy
from bench.figures import Figure, Report, median, ms
from certfleet.core.facts import certificate_facts
from testbed.certfleet_install import REPO
from testbed.processes import ServerProcess
from testbed.sandbox_fleet import NODE_AGENT_GROUPS, NODE_AGENT_USER
from testbed.webserver import Nginx

# The node agent's Role (deploy/node-agent/rbac.yaml) allows this one resource.
NAMESPACE = "default"
NAME = "www-example"
DOMAIN = "fleet.certfleet.test"
POLL_SECONDS = 5.0  # the agents' --poll-interval here
DEFAULT_POLL_SECONDS = 60.0  # the agent's default
PROBE_SECONDS = 0.05
ROTATIONS = 10
WRK = "/usr/bin/wrk"  # Debian's (tests/testbed/install-system-packages.sh)
IDLE_SECONDS = 30.0


@dataclass
class Node:
    nginx: Nginx
    agent: ServerProcess


@dataclass
class HandshakeCount:
    ok: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def served_serial(nginx: Nginx, context: ssl.SSLContext) -> int:
    """The serial of the leaf nginx presents, in a handshake verified against pebble's root."""
    with (
        socket.create_connection((nginx.address, nginx.https_port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=DOMAIN) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


class FleetBed:
    def __init__(self, bed: Bed, size: int, stack: ExitStack) -> None:
        self.bed = bed
        self.workdir = bed.workdir / "fleet"
        self.workdir.mkdir(parents=True, exist_ok=True)
        plane = bed.plane
        plane.kubectl("apply", "-f", str(REPO / "deploy" / "node-agent" / "rbac.yaml"))
        kubeconfig = self.workdir / "agent.kubeconfig"
        shutil.copyfile(plane.kubeconfig_for(NODE_AGENT_USER, NODE_AGENT_GROUPS), kubeconfig)
        trust = self.workdir / "pebble-root.pem"
        trust.write_bytes(bed.ca.issuing_roots_pem())
        self.context = ssl.create_default_context(cafile=str(trust))
        self.reader = bed.s3.read_only_user(bed.bucket, f"{PREFIX}/{CLOUDHOST}")
        self.proxy = ByteCountingProxy(int(bed.s3.endpoint.url.rsplit(":", 1)[1]))
        stack.callback(self.proxy.close)
        secrets = self.workdir / "agent-secrets"
        secrets.mkdir(exist_ok=True)
        for name, data in (
            ("accessKeyID", self.reader.access_key.encode()),
            ("secretAccessKey", self.reader.secret_key.encode()),
            ("key", bed.master_key),
        ):
            (secrets / name).write_bytes(data)
            (secrets / name).chmod(0o600)
        resource = bed.automatic(NAMESPACE, NAME, DOMAIN)
        bed.api.create(resource)
        self.leaf, revision = bed.publish(DOMAIN)
        self.hint(certificate_facts(self.leaf).serial, revision)
        self.nodes: list[Node] = []
        for index in range(size):
            root = self.workdir / f"node-{index}" / "ssl" / "live"
            nginx = stack.enter_context(
                Nginx(self.workdir / f"node-{index}" / "nginx", root / DOMAIN)
            )
            flags = [
                f"--s3-endpoint={self.proxy.url}",
                f"--s3-region={self.reader.region}",
                f"--s3-bucket={bed.bucket}",
                f"--s3-prefix={PREFIX}",
                f"--access-key-id-file={secrets / 'accessKeyID'}",
                f"--secret-access-key-file={secrets / 'secretAccessKey'}",
                f"--master-key-file={secrets / 'key'}",
                f"--cloudhost={CLOUDHOST}",
                f"--build-identifier={BUILD}",
                f"--domain={DOMAIN}",
                f"--cert-root={root}",
                f"--node-name=node-{index}",
                f"--poll-interval={POLL_SECONDS:g}",
                "--metrics-port=0",
                f"--test-command={shlex.join(nginx.test_command)}",
                f"--reload-command={shlex.join(nginx.reload_command)}",
                f"--probe-address={nginx.address}:{nginx.https_port}",
                f"--probe-ca-file={trust}",
                f"--trust-bundle={trust}",
                f"--certificate-namespace={NAMESPACE}",
                f"--certificate-name={NAME}",
                f"--kubeconfig={kubeconfig}",
            ]
            agent = ServerProcess(
                f"agent-{index}",
                [sys.executable, "-m", "certfleet.cli", "agent", *flags],
                self.workdir / f"agent-{index}.log",
                env={"PYTHONUNBUFFERED": "1"},
            )
            stack.callback(agent.stop)
            self.nodes.append(Node(nginx, agent))
        self.until_served(self.leaf.serial_number, self.nodes, timeout=120)

    def hint(self, serial: str, revision: int) -> None:
        """What the operator writes right after a publish: the agents' watch hint."""
        status, answer = self.bed.api.request(
            "PATCH",
            self.bed.api.certificates_path(NAMESPACE, NAME) + "/status",
            {"status": {"serialNumber": serial, "datastore": {"revision": revision}}},
        )
        if status != 200:
            raise RuntimeError(f"status patch: {status} {answer}")

    def rotate(self, with_hint: bool) -> tuple[int, float]:
        """A new certificate published (and hinted); returns its serial and when the pointer
        flipped (time.monotonic())."""
        leaf, revision = self.bed.publish(DOMAIN)
        flipped = time.monotonic()
        if with_hint:
            self.hint(certificate_facts(leaf).serial, revision)
        return leaf.serial_number, flipped

    def until_served(self, serial: int, nodes: list[Node], timeout: float) -> list[float]:
        """When each node first served `serial` (time.monotonic()), probing each in a thread."""
        seen: list[float] = [0.0] * len(nodes)

        def probe(index: int) -> None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    if served_serial(nodes[index].nginx, self.context) == serial:
                        seen[index] = time.monotonic()
                        return
                except (OSError, ssl.SSLError):
                    pass
                time.sleep(PROBE_SECONDS)

        threads = [threading.Thread(target=probe, args=(i,)) for i in range(len(nodes))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        late = [i for i, t in enumerate(seen) if not t]
        if late:
            logs = "\n".join(nodes[i].agent.log_tail(15) for i in late[:2])
            raise AssertionError(f"nodes {late} did not serve {serial:x} in {timeout} s:\n{logs}")
        return seen


def _convergence(fleet: FleetBed, report: Report, size: int, rounds: int) -> None:
    section = f"fleet of {size}"
    results: dict[bool, list[list[float]]] = {True: [], False: []}
    phases = random.Random(13)  # noqa: S311 - moments, not secrets
    for index in range(2 * rounds):  # interleaved: with the hint, without, with, ...
        with_hint = index % 2 == 0
        # At a random moment of the agents' poll cycle: right after they served the last
        # rotation, every poll would be a whole interval away.
        time.sleep(phases.uniform(0, POLL_SECONDS))
        serial, flipped = fleet.rotate(with_hint)
        seen = fleet.until_served(serial, fleet.nodes, timeout=POLL_SECONDS * 4 + 30)
        results[with_hint].append([t - flipped for t in seen])
    for with_hint, label in ((True, "with the watch hint"), (False, "without (polls only)")):
        every = [t for rotation in results[with_hint] for t in rotation]
        slowest = [max(rotation) for rotation in results[with_hint]]
        report.add(
            Figure(
                section,
                f"publish -> all serving, {label}: p50 per node",
                median(every),
                "s",
                f"poll interval {POLL_SECONDS:g} s",
                median(every) / POLL_SECONDS,
                "< 2 s" if with_hint else "",
            )
        )
        report.add(
            Figure(
                section,
                f"publish -> all serving, {label}: max",
                max(slowest),
                "s",
                f"{rounds} rotations",
            )
        )
        report.details[f"{section} {label}"] = [ms(rotation) for rotation in results[with_hint]]


_WRK_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_WRK_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_WRK_REQUESTS = re.compile(r"(\d+) requests in")


def _wrk_totals(outputs: list[str]) -> tuple[int, int]:
    """Failed requests (socket errors and non-2xx answers) and all requests, from wrk's
    totals."""
    failed = requests = 0
    for output in outputs:
        found = _WRK_REQUESTS.search(output)
        if not found:
            raise AssertionError(f"wrk printed no totals:\n{output}")
        requests += int(found.group(1))
        errors = _WRK_ERRORS.search(output)
        failed += sum(int(g) for g in errors.groups()) if errors else 0
        non_2xx = _WRK_NON_2XX.search(output)
        failed += int(non_2xx.group(1)) if non_2xx else 0
    return failed, requests


def _under_load(fleet: FleetBed, report: Report) -> None:
    section = "rotation under load"
    loaded = fleet.nodes[:3]
    # Against each nginx: kept-alive connections (a reload closes each of them once), and
    # a new connection per request (every request a handshake: no reload may fail one).
    kinds = {"kept alive": [], "a connection per request": ["-H", "Connection: close"]}
    wrks = {
        (kind, index): subprocess.Popen(  # noqa: S603 - our own arguments
            [
                WRK,
                "-t1",
                "-c2",
                "-d600s",
                *flags,
                f"https://{n.nginx.address}:{n.nginx.https_port}/",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for kind, flags in kinds.items()
        for index, n in enumerate(loaded)
    }
    stop = threading.Event()
    counts = [HandshakeCount() for _ in loaded]

    def handshakes(index: int) -> None:
        while not stop.is_set():
            try:
                served_serial(loaded[index].nginx, fleet.context)
                counts[index].ok += 1
            except (OSError, ssl.SSLError) as error:
                counts[index].failed += 1
                counts[index].errors.append(repr(error))

    probers = [threading.Thread(target=handshakes, args=(i,)) for i in range(len(loaded))]
    for prober in probers:
        prober.start()
    rotations: list[float] = []
    try:
        time.sleep(1)  # the load runs before the first rotation
        for _ in range(ROTATIONS):
            serial, flipped = fleet.rotate(with_hint=True)
            seen = fleet.until_served(serial, loaded, timeout=POLL_SECONDS * 4 + 30)
            rotations.append(max(seen) - flipped)
        time.sleep(1)
    finally:
        stop.set()
        for prober in probers:
            prober.join()
        outputs: dict[tuple[str, int], str] = {}
        for key, wrk in wrks.items():
            wrk.send_signal(signal.SIGINT)  # wrk prints its totals when interrupted
            outputs[key] = wrk.communicate(timeout=30)[0]
    for kind in kinds:
        failed, requests = _wrk_totals([o for (k, _), o in outputs.items() if k == kind])
        report.add(
            Figure(
                section,
                f"failed requests, {kind} (wrk, 3 nginx, {ROTATIONS} rotations)",
                failed,
                "requests",
                f"of {requests:,}",
                goal="0",
            )
        )
    ok = sum(c.ok for c in counts)
    bad = sum(c.failed for c in counts)
    report.add(
        Figure(
            section, "failed verified handshakes", bad, "handshakes", f"of {ok + bad:,}", goal="0"
        )
    )
    report.add(Figure(section, "rotation -> 3 nginx serving, median", median(rotations), "s"))
    report.details[section] = {
        "wrk": {f"{kind} {index}": output for (kind, index), output in outputs.items()},
        "handshake_errors": [e for c in counts for e in c.errors][:20],
        "rotation_seconds": rotations,
    }


def _idle_cost(fleet: FleetBed, report: Report) -> None:
    section = "idle fleet"
    agents = len(fleet.nodes)
    sent, received, _ = fleet.proxy.counts()
    mark = fleet.bed.s3_access.mark()
    started = time.monotonic()
    time.sleep(IDLE_SECONDS)  # a measuring window
    took = time.monotonic() - started
    sent2, received2, _ = fleet.proxy.counts()
    tally = fleet.bed.s3_access.tally(mark, {fleet.reader.access_key})
    # Per agent per day at the default interval: the polls scale with 1/interval.
    scale = (86400 / took) * (POLL_SECONDS / DEFAULT_POLL_SECONDS) / agents
    how = f"{took:.0f} s at --poll-interval={POLL_SECONDS:g}, scaled to {DEFAULT_POLL_SECONDS:g} s"
    report.add(
        Figure(section, "S3 requests per agent per day", tally.total * scale, "requests", how)
    )
    report.add(
        Figure(
            section,
            "S3 bytes per agent per day (both ways, headers included)",
            ((sent2 - sent) + (received2 - received)) * scale / 1024,
            "KiB",
            how,
        )
    )
    rss = [ProcessStats(n.agent.pid).peak_rss_mib() for n in fleet.nodes]
    report.add(
        Figure(section, "agent peak RSS, median", median(rss), "MiB", f"max {max(rss):.0f} MiB")
    )
    report.details[section] = {
        "s3_requests": dict(tally.kinds),
        "seconds": took,
        "bytes_sent": sent2 - sent,
        "bytes_received": received2 - received,
    }


def run(bed: Bed, report: Report, size: int) -> None:
    with ExitStack() as stack:
        print(f"  starting {size} nginx and agents", flush=True)
        fleet = FleetBed(bed, size, stack)
        _convergence(fleet, report, size, rounds=5)
        _under_load(fleet, report)
        _idle_cost(fleet, report)
