"""`certfleet`: the command line. `certfleet operator` runs the Kubernetes operator,
`certfleet agent` the webserver agent."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import kopf
from kubernetes import config as kube_config

from certfleet.acme_issuer import ari
from certfleet.acme_issuer.http01 import ChallengeStore, Http01Server
from certfleet.agent import config as agent_config
from certfleet.agent import main as agent_main
from certfleet.controller.adapters import ClusterWorld
from certfleet.controller.handlers import MAX_RENEWAL_SLEEP_SECONDS, Runtime, register
from certfleet.controller.metrics import OperatorMetrics
from certfleet.controller.reconciler import Reconciler, ReconcilerSettings
from certfleet.core.addresses import parse_host_port
from certfleet.core.backoff import DEFAULT_BASE_SECONDS, DEFAULT_CAP_SECONDS
from certfleet.core.clock import utc_now
from certfleet.kube.gateway import KubernetesGateway
from certfleet.kube.lease import LeaderElector, standby_liveness

# kopf's own bookkeeping annotations. Not plain "certfleet.io": kopf leaves every annotation
# under its storage prefix out of its diffs, so a person's certfleet.io/renew-now would go unseen.
KOPF_ANNOTATION_PREFIX = "operator.certfleet.io"


def _host_port(value: str) -> tuple[str, int]:
    try:
        return parse_host_port(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


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
    operator.add_argument(
        "--issuance-backoff-seconds",
        type=float,
        default=DEFAULT_BASE_SECONDS,
        help="first wait after a failed issuance; it doubles with every failure in a row",
    )
    operator.add_argument("--issuance-backoff-cap-seconds", type=float, default=DEFAULT_CAP_SECONDS)
    operator.add_argument(
        "--recheck-seconds",
        type=float,
        default=MAX_RENEWAL_SLEEP_SECONDS,
        help="reconcile a certificate that is not due yet at least this often (clock jumps, "
        "the CA's renewal information)",
    )
    operator.add_argument(
        "--ari-retry-after-min-seconds",
        type=float,
        default=ari.DEFAULT_MIN_ASK_AGAIN_SECONDS,
        help="ask the CA's renewal information (RFC 9773) for a certificate at most this "
        "often, whatever its Retry-After says (also after a failure)",
    )
    operator.add_argument(
        "--ari-retry-after-max-seconds",
        type=float,
        default=ari.DEFAULT_MAX_ASK_AGAIN_SECONDS,
        help="and at least this often",
    )
    operator.add_argument(
        "--leader-election",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with several replicas, only the holder of a Lease acts (default: on)",
    )
    operator.add_argument("--lease-name", default="certfleet-operator")
    operator.add_argument("--lease-seconds", type=float, default=15.0)
    operator.add_argument(
        "--identity",
        default=os.environ.get("CERTFLEET_POD_NAME") or f"{socket.gethostname()}-{os.getpid()}",
        help="this replica's name in the Lease (env CERTFLEET_POD_NAME)",
    )
    operator.add_argument(
        "--metrics-listen",
        type=_host_port,
        default=_host_port(os.environ.get("CERTFLEET_METRICS_LISTEN", "0.0.0.0:9090")),
        help="where Prometheus scrapes /metrics (HOST:PORT, env CERTFLEET_METRICS_LISTEN)",
    )
    operator.add_argument("--liveness", default="http://0.0.0.0:8080/healthz")
    operator.add_argument("--verbose", action="store_true")
    agent = commands.add_parser(
        "agent", help="install the datastore's certificate on this webserver node and reload it"
    )
    agent_config.add_arguments(agent)
    renew = commands.add_parser(
        "renew", help="ask the operator for a new certificate now (sets certfleet.io/renew-now)"
    )
    renew.add_argument("name", help="the ManagedCertificate")
    renew.add_argument("-n", "--namespace", default="default")
    return parser


def _configure_kopf(registry: kopf.OperatorRegistry) -> None:
    @kopf.on.startup(registry=registry)
    def settings(settings: kopf.OperatorSettings, **_: Any) -> None:
        # kopf's bookkeeping under certfleet's own annotation prefix, not kopf.zalando.org.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
            prefix=KOPF_ANNOTATION_PREFIX
        )
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=KOPF_ANNOTATION_PREFIX, key="last-handled-configuration"
        )
        settings.persistence.finalizer = "certfleet.io/finalizer"
        settings.posting.level = logging.WARNING  # events come from the handlers themselves
        settings.watching.server_timeout = 300
        # Sync handlers run in kopf's thread pool (min(32, CPUs + 4) by default: 6 on 2 cores);
        # reconciliations wait on S3 and the CA, not the CPU, so allow more of them at once.
        settings.execution.max_workers = 32

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_via_client(**kwargs)


def _lead(
    args: argparse.Namespace, stop: threading.Event, on_lost: Callable[[], None]
) -> LeaderElector | None:
    """Waits until this replica may act; None when leader election is off."""
    if not args.leader_election:
        return None
    elector = LeaderElector(
        args.namespace,
        args.lease_name,
        args.identity,
        duration=timedelta(seconds=args.lease_seconds),
        retry_period=timedelta(seconds=max(args.lease_seconds / 5, 0.2)),
    )
    with standby_liveness(args.liveness):
        elector.acquire(stop)
    elector.keep_leading(on_lost=on_lost, stop=stop)
    return elector


def run_operator(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    kube_config.load_config()
    renewals_stop = threading.Event()
    lost = threading.Event()

    def on_lost() -> None:
        # Stop acting at once, the way kopf stops on a SIGTERM; exit 1 to come back as a
        # standby. (kopf's stop_flag would be waited on in an executor thread that then keeps
        # the process from exiting.)
        lost.set()
        os.kill(os.getpid(), signal.SIGTERM)

    metrics = OperatorMetrics()
    # Before the election: a standby is scraped too, and says it does not act.
    metrics_server = metrics.serve(*args.metrics_listen)
    elector = _lead(args, renewals_stop, on_lost)
    metrics.set_leader(True)
    challenges = ChallengeStore()
    http01 = Http01Server(challenges, *args.http01_listen)
    http01.start()
    world = ClusterWorld(
        KubernetesGateway(),
        args.namespace,
        challenges,
        acme_ca_bundle=args.acme_ca_bundle,
        on_acme_request=metrics.acme_request,
        on_s3_client=metrics.instrument_s3_client,
        ari_min_ask_again_seconds=args.ari_retry_after_min_seconds,
        ari_max_ask_again_seconds=args.ari_retry_after_max_seconds,
    )
    settings = ReconcilerSettings(
        retry_seconds=args.retry_seconds,
        manual_poll_seconds=args.manual_poll_seconds,
        issuance_backoff_base_seconds=args.issuance_backoff_seconds,
        issuance_backoff_cap_seconds=args.issuance_backoff_cap_seconds,
    )
    runtime = Runtime(
        Reconciler(world, utc_now, settings),
        KubernetesGateway(),
        utc_now,
        metrics=metrics,
        recheck_seconds=args.recheck_seconds,
    )
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
        metrics.set_leader(False)
        metrics_server.shutdown()
        renewals_stop.set()
        if elector is not None and not lost.is_set():
            elector.release()
    return 1 if lost.is_set() else 0


def request_renewal(args: argparse.Namespace) -> int:
    kube_config.load_config()
    KubernetesGateway().request_renewal(args.namespace, args.name, utc_now())
    print(f"asked for a new certificate for {args.namespace}/{args.name}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "operator":
        return run_operator(args)
    if args.command == "renew":
        return request_renewal(args)
    if args.command == "agent":
        return agent_main.run(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
