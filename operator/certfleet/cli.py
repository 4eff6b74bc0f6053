"""`certfleet`: the command line. `certfleet operator` runs the Kubernetes operator,
`certfleet agent` the webserver agent, `certfleet reconcile -f FILE` the same reconciliation
without a cluster (a build machine's cron job), `certfleet renew` asks for a new certificate
now.

Parsing only: each program's defaults come from its settings dataclass, and the program
itself lives in `certfleet.controller.main`, `certfleet.agent.main` or
`certfleet.buildmachine.main`.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from certfleet.agent import config as agent_config
from certfleet.agent import main as agent_main
from certfleet.core.addresses import parse_host_port
from certfleet.core.clock import utc_now


def _host_port(value: str) -> tuple[str, int]:
    try:
        return parse_host_port(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if not 1 <= number <= 1000:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number from 1 to 1000")
    return number


def _env_host_port(name: str, default: tuple[str, int]) -> tuple[str, int]:
    value = os.environ.get(name)
    return _host_port(value) if value else default


def _add_operator_arguments(operator: argparse.ArgumentParser) -> None:
    from certfleet.controller.main import OperatorSettings

    defaults = OperatorSettings()
    decisions = defaults.decisions
    add = operator.add_argument
    add(
        "--namespace",
        default=os.environ.get("CERTFLEET_NAMESPACE", defaults.namespace),
        help="the operator's own namespace, for ACME account Secrets (env CERTFLEET_NAMESPACE)",
    )
    add(
        "--http01-listen",
        type=_host_port,
        default=_env_host_port("CERTFLEET_HTTP01_LISTEN", defaults.http01_listen),
        help="where webservers proxy /.well-known/acme-challenge/ to (HOST:PORT)",
    )
    add(
        "--acme-ca-bundle",
        default=os.environ.get("CERTFLEET_ACME_CA_BUNDLE", defaults.acme_ca_bundle),
        help="CA file to verify the ACME server's HTTPS with (a private CA such as pebble)",
    )
    add("--retry-seconds", type=float, default=decisions.retry_seconds)
    add(
        "--manual-poll-seconds",
        type=float,
        default=decisions.manual_poll_seconds,
        help="how often a MANUAL certificate's Secret is checked while waiting for it",
    )
    add(
        "--issuance-backoff-seconds",
        type=float,
        default=decisions.issuance_backoff_base_seconds,
        help="first wait after a failed issuance; it doubles with every failure in a row",
    )
    add(
        "--issuance-backoff-cap-seconds",
        type=float,
        default=decisions.issuance_backoff_cap_seconds,
    )
    add(
        "--acme-failures-before-fallback",
        type=_positive_int,
        default=decisions.failures_per_acme_server,
        help="failed issuances in a row at one ACME server before the next of "
        "spec.acme.fallbackServers is tried",
    )
    add(
        "--recheck-seconds",
        type=float,
        default=defaults.recheck_seconds,
        help="reconcile a certificate that is not due yet at least this often (clock jumps, "
        "the CA's renewal information)",
    )
    add(
        "--ari-retry-after-min-seconds",
        type=float,
        default=defaults.ari_min_ask_again_seconds,
        help="ask the CA's renewal information (RFC 9773) for a certificate at most this "
        "often, whatever its Retry-After says (also after a failure)",
    )
    add(
        "--ari-retry-after-max-seconds",
        type=float,
        default=defaults.ari_max_ask_again_seconds,
        help="and at least this often",
    )
    add(
        "--leader-election",
        action=argparse.BooleanOptionalAction,
        default=defaults.leader_election,
        help="with several replicas, only the holder of a Lease acts (default: on)",
    )
    add("--lease-name", default=defaults.lease_name)
    add("--lease-seconds", type=float, default=defaults.lease_seconds)
    add(
        "--identity",
        default=os.environ.get("CERTFLEET_POD_NAME") or f"{socket.gethostname()}-{os.getpid()}",
        help="this replica's name in the Lease (env CERTFLEET_POD_NAME)",
    )
    add(
        "--pod-name",
        default=os.environ.get("CERTFLEET_POD_NAME", defaults.pod_name),
        help="this replica's pod, labelled certfleet.io/leader=true while it holds the Lease "
        "(the solver Service's selector); unset outside a pod (env CERTFLEET_POD_NAME)",
    )
    add(
        "--metrics-listen",
        type=_host_port,
        default=_env_host_port("CERTFLEET_METRICS_LISTEN", defaults.metrics_listen),
        help="where Prometheus scrapes /metrics (HOST:PORT, env CERTFLEET_METRICS_LISTEN)",
    )
    add(
        "--dns01-resolver",
        type=_host_port,
        default=_env_host_port("CERTFLEET_DNS01_RESOLVER", ("", 0)),
        help="the DNS resolver that finds a DNS-01 record's zone and its nameservers "
        "(HOST:PORT; default: the first nameserver of /etc/resolv.conf)",
    )
    add(
        "--dns01-nameserver-port",
        type=int,
        default=defaults.dns01.nameserver_port,
        help="the port the zones' authoritative servers answer on (53 but on a test bed)",
    )
    add(
        "--dns01-propagation-timeout",
        type=float,
        default=defaults.dns01.propagation_timeout,
        help="how long a DNS-01 record may take to show at every authoritative server",
    )
    add("--dns01-poll-seconds", type=float, default=defaults.dns01.poll_interval)
    add("--liveness", default=defaults.liveness)
    add("--verbose", action="store_true")


def _add_reconcile_arguments(reconcile: argparse.ArgumentParser) -> None:
    from certfleet.buildmachine.main import BuildMachineSettings

    defaults = BuildMachineSettings(files=())
    add = reconcile.add_argument
    add(
        "-f",
        "--filename",
        dest="files",
        type=Path,
        action="append",
        required=True,
        help="a YAML file of ManagedCertificate and CloudHost documents (repeatable)",
    )
    add(
        "--runtimedata",
        type=Path,
        default=Path(os.environ.get("CERTFLEET_RUNTIMEDATA", defaults.runtimedata)),
        help="the cache: RUNTIMEDATA/CLOUDHOST/BUILD/ssl/DOMAIN/ (env CERTFLEET_RUNTIMEDATA)",
    )
    add(
        "--secrets-dir",
        type=Path,
        default=Path(os.environ.get("CERTFLEET_SECRETS_DIR", defaults.secrets_dir)),
        help="the Secrets the documents name, as files SECRETS_DIR/NAMESPACE/NAME/KEY "
        "(env CERTFLEET_SECRETS_DIR)",
    )
    add(
        "--manual-dir",
        type=Path,
        help="MANUAL certificates: MANUAL_DIR/<spec.manual.secretName>/fullchain.pem and "
        "privkey.pem (default RUNTIMEDATA/manual)",
    )
    add("--state-dir", type=Path, help="ACME accounts (default RUNTIMEDATA/.certfleet)")
    add(
        "--status-file",
        type=Path,
        help="the statuses as JSON (default RUNTIMEDATA/certfleet-status.json)",
    )
    add("--metrics-textfile", type=Path, help="a Prometheus textfile (node exporter)")
    add(
        "--http01-listen",
        type=_host_port,
        default=_env_host_port("CERTFLEET_HTTP01_LISTEN", defaults.http01_listen),
        help="where webservers proxy /.well-known/acme-challenge/ to (HOST:PORT)",
    )
    add("--acme-ca-bundle", default=os.environ.get("CERTFLEET_ACME_CA_BUNDLE"))
    add(
        "--wait-for-other-order-seconds",
        type=float,
        default=defaults.wait_for_other_order_seconds,
        help="while another certfleet holds a certificate's order lease, wait this long for "
        "its certificate",
    )
    add("--identity", default=defaults.identity, help="this machine's name in order leases")
    add(
        "--retry-now",
        action="store_true",
        help="order now even where the last run's failed order is still backing off (the "
        "status file says until when; a changed spec ends the wait too)",
    )
    add(
        "--owner",
        default=os.environ.get("CERTFLEET_OWNER", defaults.owner),
        help="the owner name of this fleet's build machines: every build machine of the "
        "fleet gives the same one, so they all act on its locations (env CERTFLEET_OWNER)",
    )
    add("--verbose", action="store_true")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="certfleet", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    _add_operator_arguments(
        commands.add_parser("operator", help="run the ManagedCertificate operator")
    )
    agent = commands.add_parser(
        "agent", help="install the datastore's certificate on this webserver node and reload it"
    )
    agent_config.add_arguments(agent)
    _add_reconcile_arguments(
        commands.add_parser(
            "reconcile",
            help="reconcile the certificates of YAML files once, without a cluster (cron)",
        )
    )
    renew = commands.add_parser(
        "renew", help="ask the operator for a new certificate now (sets certfleet.io/renew-now)"
    )
    renew.add_argument("name", help="the ManagedCertificate")
    renew.add_argument("-n", "--namespace", default="default")
    return parser


def _run_operator(args: argparse.Namespace) -> int:
    from certfleet.controller.decide import DecisionSettings
    from certfleet.controller.main import OperatorSettings, run
    from certfleet.controller.solvers import Dns01Options

    return run(
        OperatorSettings(
            namespace=args.namespace,
            http01_listen=args.http01_listen,
            acme_ca_bundle=args.acme_ca_bundle,
            decisions=DecisionSettings(
                retry_seconds=args.retry_seconds,
                manual_poll_seconds=args.manual_poll_seconds,
                issuance_backoff_base_seconds=args.issuance_backoff_seconds,
                issuance_backoff_cap_seconds=args.issuance_backoff_cap_seconds,
                failures_per_acme_server=args.acme_failures_before_fallback,
            ),
            recheck_seconds=args.recheck_seconds,
            ari_min_ask_again_seconds=args.ari_retry_after_min_seconds,
            ari_max_ask_again_seconds=args.ari_retry_after_max_seconds,
            leader_election=args.leader_election,
            lease_name=args.lease_name,
            lease_seconds=args.lease_seconds,
            identity=args.identity,
            pod_name=args.pod_name,
            metrics_listen=args.metrics_listen,
            liveness=args.liveness,
            verbose=args.verbose,
            dns01=Dns01Options(
                resolver=args.dns01_resolver if args.dns01_resolver[0] else None,
                nameserver_port=args.dns01_nameserver_port,
                propagation_timeout=args.dns01_propagation_timeout,
                poll_interval=args.dns01_poll_seconds,
            ),
        )
    )


def _reconcile(args: argparse.Namespace) -> int:
    from certfleet.buildmachine.main import BuildMachineSettings, run

    return run(
        BuildMachineSettings(
            files=tuple(args.files),
            runtimedata=args.runtimedata,
            secrets_dir=args.secrets_dir,
            manual_dir=args.manual_dir,
            state_dir=args.state_dir,
            status_file=args.status_file,
            metrics_textfile=args.metrics_textfile,
            http01_listen=args.http01_listen,
            acme_ca_bundle=args.acme_ca_bundle,
            wait_for_other_order_seconds=args.wait_for_other_order_seconds,
            identity=args.identity,
            retry_now=args.retry_now,
            owner=args.owner,
        )
    )


def _renew(args: argparse.Namespace) -> int:
    from kubernetes import config as kube_config

    from certfleet.kube.gateway import KubernetesGateway

    kube_config.load_config()
    KubernetesGateway().request_renewal(args.namespace, args.name, utc_now())
    print(f"asked for a new certificate for {args.namespace}/{args.name}")
    return 0


def configure_logging(verbose: bool, quiet: bool = False) -> None:
    """INFO for everything; `--verbose` makes certfleet's own loggers say more, never the
    client libraries': the Kubernetes client logs response bodies (Secrets, keys included)
    at DEBUG, and botocore its requests. `quiet` (a cron job, which mails whatever it
    prints): warnings only, unless verbose."""
    level = logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    own = logging.DEBUG if verbose else level
    logging.getLogger("certfleet").setLevel(own)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(getattr(args, "verbose", False), quiet=args.command == "reconcile")
    if args.command == "operator":
        return _run_operator(args)
    if args.command == "reconcile":
        return _reconcile(args)
    if args.command == "renew":
        return _renew(args)
    if args.command == "agent":
        return agent_main.run(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
