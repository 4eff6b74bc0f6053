"""`certfleet`: the command line. `certfleet operator` runs the Kubernetes operator,
`certfleet agent` the webserver agent."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import kopf
from kubernetes import config as kube_config

from certfleet.acme_issuer.http01 import ChallengeStore, Http01Server
from certfleet.agent import command as agent_command
from certfleet.cluster_world import ClusterWorld
from certfleet.handlers import Runtime, register, utc_now
from certfleet.kubernetes_gateway import KubernetesGateway
from certfleet.reconciler import Reconciler, ReconcilerSettings

ANNOTATION_PREFIX = "certfleet.io"


def _host_port(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host, int(port)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="certfleet", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    operator = commands.add_parser("operator", help="run the ManagedCertificate operator")
    operator.add_argument(
        "--namespace",
        default=os.environ.get("CERTFLEET_NAMESPACE", "certfleet-system"),
        help="the operator's own namespace, for ACME account Secrets (env CERTFLEET_NAMESPACE)",
    )
    operator.add_argument(
        "--http01-listen",
        type=_host_port,
        default=_host_port(os.environ.get("CERTFLEET_HTTP01_LISTEN", "0.0.0.0:8089")),
        help="where webservers proxy /.well-known/acme-challenge/ to (HOST:PORT)",
    )
    operator.add_argument(
        "--acme-ca-bundle",
        default=os.environ.get("CERTFLEET_ACME_CA_BUNDLE"),
        help="CA file to verify the ACME server's HTTPS with (a private CA such as pebble)",
    )
    operator.add_argument("--retry-seconds", type=float, default=30.0)
    operator.add_argument(
        "--manual-poll-seconds",
        type=float,
        default=30.0,
        help="how often a MANUAL certificate's Secret is checked while waiting for it",
    )
    operator.add_argument("--liveness", default="http://0.0.0.0:8080/healthz")
    operator.add_argument("--verbose", action="store_true")
    agent = commands.add_parser(
        "agent", help="install the datastore's certificate on this webserver node and reload it"
    )
    agent_command.add_arguments(agent)
    return parser


def _configure_kopf(registry: kopf.OperatorRegistry) -> None:
    @kopf.on.startup(registry=registry)
    def settings(settings: kopf.OperatorSettings, **_: Any) -> None:
        # kopf's bookkeeping under certfleet's own annotation prefix, not kopf.zalando.org.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
            prefix=ANNOTATION_PREFIX
        )
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
        )
        settings.persistence.finalizer = f"{ANNOTATION_PREFIX}/finalizer"
        settings.posting.level = logging.WARNING  # events come from the handlers themselves
        settings.watching.server_timeout = 300
        # Our daemons are threads: give one a moment to return from stopped.wait() before
        # kopf concludes it is slow to stop (which delays deletions by the backoff).
        settings.background.instant_exit_timeout = 1.0

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_via_client(**kwargs)


def run_operator(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    kube_config.load_config()
    challenges = ChallengeStore()
    http01 = Http01Server(challenges, *args.http01_listen)
    http01.start()
    world = ClusterWorld(
        KubernetesGateway(), args.namespace, challenges, acme_ca_bundle=args.acme_ca_bundle
    )
    settings = ReconcilerSettings(
        retry_seconds=args.retry_seconds, manual_poll_seconds=args.manual_poll_seconds
    )
    runtime = Runtime(Reconciler(world, utc_now, settings), KubernetesGateway(), utc_now)
    registry = kopf.OperatorRegistry()
    _configure_kopf(registry)
    register(registry, runtime)
    try:
        kopf.run(
            registry=registry,
            clusterwide=True,
            standalone=True,
            liveness_endpoint=args.liveness,
        )
    finally:
        http01.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "operator":
        return run_operator(args)
    if args.command == "agent":
        return agent_command.run(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
