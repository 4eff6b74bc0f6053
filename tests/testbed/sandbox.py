"""`make sandbox`: certfleet's main job on a local sandbox, started from nothing.

Starts the test bed's real servers (Kubernetes control plane, pebble, S3, nginx), installs the
CRDs and a CloudHost, runs `certfleet operator`, applies examples/ and shows
`kubectl get mcert` turning Ready; then two nodes (an nginx and a `certfleet agent` each,
tests/testbed/sandbox_fleet.py) install the certificate until the wide table says 2/2 nodes
serve its serial, and prints a `curl` line that shows it served. Then it keeps everything
running until Ctrl-C (or exits at once with --exit-when-ready), and stops every server it
started.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from testbed.acme_ca import AcmeCA
from testbed.certfleet_install import OPERATOR_NAMESPACE, CertfleetInstall, load_example
from testbed.control_plane import ControlPlane
from testbed.s3 import S3Endpoint, S3Server
from testbed.sandbox_fleet import Certificate, SandboxFleet
from testbed.waiting import WaitTimeout, wait_for
from testbed.webserver import Nginx


def say(message: str) -> None:
    print(f"sandbox: {message}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="make sandbox", description=__doc__)
    parser.add_argument(
        "--exit-when-ready",
        action="store_true",
        help="stop the sandbox as soon as the example certificate is Ready",
    )
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="certfleet-sandbox-"))
    say(f"working in {workdir}")
    with (
        ControlPlane(workdir / "control-plane") as plane,
        S3Server(workdir / "s3") as s3,
        AcmeCA(workdir / "acme") as ca,
    ):
        say(f"Kubernetes API {plane.server_url}, S3 {s3.endpoint.url}, ACME {ca.directory_url}")
        install = CertfleetInstall(plane, workdir / "certfleet")
        install.install_crds()
        bucket = s3.endpoint.new_bucket()
        # pebble's root is new at every start: the CloudHost's trust bundle names this one.
        master_key = install.create_cloudhost(
            "sandbox", s3.endpoint, bucket, trust_bundle=ca.issuing_roots_pem()
        )
        # The agents' credentials (agentCredentialsSecretRef): read-only on the CloudHost's prefix.
        reader = s3.read_only_user(bucket, "certfleet/sandbox")
        install.apply_secret(
            OPERATOR_NAMESPACE,
            "sandbox-agent-s3-credentials",
            {
                "accessKeyID": reader.access_key.encode(),
                "secretAccessKey": reader.secret_key.encode(),
            },
        )
        # The fleet's webserver: pebble validates HTTP-01 against it, it proxies to certfleet.
        with Nginx(
            workdir / "nginx",
            workdir / "nginx" / "ssl",
            http_port=ca.http_port,
            challenge_proxy=f"http://127.0.0.1:{install.http01_port}",
        ):
            install.start_operator(ca)
            try:
                with ExitStack() as stack:
                    fleet = SandboxFleet(workdir / "fleet", stack)
                    agents = (fleet, reader, master_key)
                    return _show(install, ca, plane, bucket, agents, args)
            finally:
                install.stop_operator()


def _show(
    install: CertfleetInstall,
    ca: AcmeCA,
    plane: ControlPlane,
    bucket: str,
    agents: tuple[SandboxFleet, S3Endpoint, bytes],
    args: argparse.Namespace,
) -> int:
    automatic = load_example("automatic.yaml")
    automatic["spec"]["acme"]["server"] = ca.directory_url
    install.apply(automatic)
    install.apply(copy.deepcopy(load_example("manual.yaml")))
    say("applied examples/automatic.yaml and examples/manual.yaml; kubectl get mcert:")

    name = automatic["metadata"]["name"]
    namespace = automatic["metadata"]["namespace"]
    shown = ""

    def ready_with_table_shown() -> bool:
        nonlocal shown
        table = plane.kubectl("get", "mcert", "-n", namespace).stdout
        if table != shown:
            print(table, flush=True)
            shown = table
        ready = install.managed_certificate(namespace, name).get("status", {}).get("conditions", [])
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in ready)

    try:
        wait_for(f"{name} Ready", ready_with_table_shown, timeout=args.timeout, interval=0.5)
    except WaitTimeout:
        say(f"{name} did not become Ready within {args.timeout:.0f} s; operator log:")
        print(install.operator.log_tail(40) if install.operator else "", flush=True)
        return 1
    print(plane.kubectl("get", "mcert", "-n", namespace, "-o", "wide").stdout, flush=True)
    say(f"{name} is Ready: its certificate is in s3://{bucket}/ and in a cache Secret.")
    fleet, reader, master_key = agents
    spec = automatic["spec"]
    certificate = Certificate(
        namespace,
        name,
        spec["domain"],
        spec["cloudhost"],
        spec["buildIdentifier"],
        bucket,
        "certfleet",
    )
    fleet.start(plane, ca, reader, master_key, certificate)
    say("two nodes (nginx + certfleet agent) install it; kubectl get mcert -o wide:")
    serial = install.managed_certificate(namespace, name)["status"]["serialNumber"]
    everywhere = f"{len(fleet.nodes)}/{len(fleet.nodes)} nodes serve serial {serial}"

    def summary() -> str:
        status = install.managed_certificate(namespace, name).get("status", {})
        return str(status.get("fleet", {}).get("summary", ""))

    try:
        wait_for(everywhere, lambda: summary() == everywhere, timeout=args.timeout, interval=0.5)
    except WaitTimeout:
        say(f"the fleet says {summary()!r}, not {everywhere!r}; agents' logs:")
        print(fleet.logs(), flush=True)
        return 1
    print(plane.kubectl("get", "mcert", "-n", namespace, "-o", "wide").stdout, flush=True)
    say(f"{everywhere}; see it served:")
    print(f"  {fleet.curl_line(certificate.domain)}", flush=True)
    if args.exit_when_ready:
        return 0
    say("the sandbox keeps running; in another shell:")
    print(
        f"  export KUBECONFIG={plane.admin_kubeconfig}\n"
        f"  {plane.kubectl_path} get mcert -A -o wide\n"
        f"  operator log: {install.operator.log_path if install.operator else ''}\n"
        "Ctrl-C stops every server.",
        flush=True,
    )
    try:
        if install.operator is not None:
            install.operator.popen.wait()
    except KeyboardInterrupt:
        say("stopping")
        return 0
    say("the operator exited; log:\n" + (install.operator.log_tail(40) if install.operator else ""))
    return 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
