"""`certfleet agent`'s configuration: its flags, each with an environment variable (for a
container or a unit file), validated into an AgentConfig. Defaults that the agent's parts
already have (AgentSettings, the webserver's command timeout) are read from them, not repeated.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from certfleet.agent.installer import directory_name
from certfleet.agent.loop import AgentSettings
from certfleet.agent.probe import TlsProber
from certfleet.agent.webserver import DEFAULT_TIMEOUT_SECONDS, CommandWebserver, WebserverKind
from certfleet.core.addresses import parse_host_port
from certfleet.core.domains import validate_domain
from certfleet.core.errors import CertfleetError, InvalidDomainError
from certfleet.datastore.encryption import MASTER_KEY_BYTES, MasterKey
from certfleet.datastore.location import DatastoreLocation

DEFAULT_METRICS_PORT = 9477
_NODE_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?")
_SECRET_FILE_LIMIT = 4096


def _setting(name: str) -> str:
    """AgentSettings' default for `name`, as a flag's default text."""
    default = next(each.default for each in fields(AgentSettings) if each.name == name)
    return f"{default:g}"


class AgentConfigError(CertfleetError):
    """The agent's flags or files do not make a usable configuration."""


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _option(
    group: Any,
    flag: str,
    env: str,
    help: str,
    default: str | None = None,
    *,
    kind: Callable[[str], Any] = str,
    **options: Any,
) -> None:
    """A flag whose default comes from `env` (then `default`); the help names both."""
    # A str default goes through `kind` like a command-line value (argparse does that), so a
    # bad variable is reported as a usage error, and only when `agent` is the command.
    shown = f"{env}" + (f", default {default}" if default not in (None, "") else "")
    group.add_argument(
        flag, default=_env(env, default), type=kind, help=f"{help} ({shown})", **options
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The agent's flags; each has an environment variable, for a container or a unit file."""
    s3 = parser.add_argument_group("datastore: the CloudHost's S3 bucket")
    _option(s3, "--s3-endpoint", "CERTFLEET_S3_ENDPOINT", "S3 endpoint URL; omit for AWS")
    _option(s3, "--s3-region", "CERTFLEET_S3_REGION", "S3 region", "us-east-1")
    _option(s3, "--s3-bucket", "CERTFLEET_S3_BUCKET", "bucket (required)")
    _option(s3, "--s3-prefix", "CERTFLEET_S3_PREFIX", "the CloudHost's prefix", "certfleet")
    _option(
        s3,
        "--s3-addressing-style",
        "CERTFLEET_S3_ADDRESSING_STYLE",
        "path or virtual",
        "path",
        choices=["path", "virtual"],
    )
    _option(s3, "--s3-ca-bundle", "CERTFLEET_S3_CA_BUNDLE", "CA file for a private S3 endpoint")
    _option(
        s3,
        "--access-key-id-file",
        "CERTFLEET_S3_ACCESS_KEY_ID_FILE",
        "file with the access key id (the mounted accessKeyID of the CloudHost's credentials "
        "Secret); without it, AWS_ACCESS_KEY_ID or boto3's other sources",
    )
    _option(
        s3,
        "--secret-access-key-file",
        "CERTFLEET_S3_SECRET_ACCESS_KEY_FILE",
        "file with the secret access key; without it, AWS_SECRET_ACCESS_KEY",
    )
    env_keys = _env("CERTFLEET_MASTER_KEY_FILE")
    s3.add_argument(
        "--master-key-file",
        action="append",
        default=env_keys.split(os.pathsep) if env_keys else None,
        help=f"file of {MASTER_KEY_BYTES} bytes that decrypts the private keys: the key 'key' of "
        "the CloudHost's encryption key Secret; repeat it during a key rotation "
        "(CERTFLEET_MASTER_KEY_FILE, several joined by ':')",
    )
    _option(s3, "--cloudhost", "CERTFLEET_CLOUDHOST", "the CloudHost's name (required)")
    _option(s3, "--build-identifier", "CERTFLEET_BUILD_IDENTIFIER", "the build (required)")
    _option(
        s3,
        "--domain",
        "WEBSITE_URL",
        "the certificate's domain (required; CERTFLEET_DOMAIN works too)",
        _env("CERTFLEET_DOMAIN"),
    )

    node = parser.add_argument_group("the node")
    _option(
        node,
        "--cert-root",
        "CERTFLEET_CERT_ROOT",
        "files go to CERT_ROOT/<domain>/fullchain.pem and privkey.pem",
        str(Path.home() / "ssl" / "live"),
    )
    _option(
        node,
        "--webserver",
        "CERTFLEET_WEBSERVER",
        "how to test and reload",
        WebserverKind.NGINX.value,
        choices=[kind.value for kind in WebserverKind],
    )
    _option(
        node,
        "--test-command",
        "CERTFLEET_TEST_COMMAND",
        "replaces the kind's configuration test; '' skips the test",
    )
    _option(node, "--reload-command", "CERTFLEET_RELOAD_COMMAND", "replaces the kind's reload")
    _option(
        node,
        "--command-timeout",
        "CERTFLEET_COMMAND_TIMEOUT",
        "seconds a test or reload may take",
        f"{DEFAULT_TIMEOUT_SECONDS:g}",
        kind=float,
    )
    _option(
        node,
        "--probe-address",
        "CERTFLEET_PROBE_ADDRESS",
        "HOST:PORT of the TLS listener that confirms what is served; 'none' skips it",
        "127.0.0.1:443",
    )
    _option(
        node,
        "--probe-server-name",
        "CERTFLEET_PROBE_SERVER_NAME",
        "SNI of the probe; default the domain",
    )
    _option(
        node,
        "--probe-ca-file",
        "CERTFLEET_PROBE_CA_FILE",
        "also verify the served chain and name against this CA file",
    )
    _option(
        node,
        "--probe-timeout",
        "CERTFLEET_PROBE_TIMEOUT",
        "seconds the new certificate may take to be served after a reload",
        _setting("probe_timeout"),
        kind=float,
    )
    _option(
        node,
        "--node-name",
        "NODE_NAME",
        "this node's key in status.fleet.nodes (CERTFLEET_NODE_NAME works too)",
        _env("CERTFLEET_NODE_NAME", socket.gethostname()),
    )

    loop = parser.add_argument_group("the loop")
    _option(
        loop,
        "--poll-interval",
        "CERTFLEET_POLL_INTERVAL",
        "seconds between conditional reads of the pointer",
        _setting("poll_interval"),
        kind=float,
    )
    _option(
        loop,
        "--max-backoff",
        "CERTFLEET_MAX_BACKOFF",
        "longest wait in seconds before a failed revision is tried again",
        _setting("max_backoff"),
        kind=float,
    )
    _option(
        loop,
        "--recheck-interval",
        "CERTFLEET_RECHECK_INTERVAL",
        "seconds between local checks that the files and the served leaf are still the "
        "datastore's, while it is unchanged",
        _setting("recheck_interval"),
        kind=float,
    )
    loop.add_argument(
        "--once", action="store_true", help="sync once and exit (cron, systemd timer, init step)"
    )
    loop.add_argument(
        "--no-reload",
        dest="reload",
        action="store_false",
        help="install the files only: the init step before the webserver starts",
    )
    loop.add_argument(
        "--force",
        action="store_true",
        help="install the datastore's certificate even if it is older than the installed one",
    )

    report = parser.add_argument_group("reporting")
    _option(
        report,
        "--certificate-namespace",
        "CERTFLEET_CERTIFICATE_NAMESPACE",
        "namespace of the ManagedCertificate to report to",
    )
    _option(
        report,
        "--certificate-name",
        "CERTFLEET_CERTIFICATE_NAME",
        "name of the ManagedCertificate to report to",
    )
    _option(
        report,
        "--kubeconfig",
        "KUBECONFIG",
        "kubeconfig for the report; default the in-cluster service account",
    )
    report.add_argument(
        "--watch",
        action=argparse.BooleanOptionalAction,
        default=_env("CERTFLEET_WATCH", "true") not in ("false", "0", "no"),
        help="with a ManagedCertificate, also watch it and sync at once when its status names "
        "a new serial (a hint; S3 stays the source of truth) (CERTFLEET_WATCH, default true)",
    )
    _option(
        report,
        "--report-interval",
        "CERTFLEET_REPORT_INTERVAL",
        "refresh lastSuccessfulSync in the status at least this often (seconds)",
        _setting("report_interval"),
        kind=float,
    )
    _option(
        report,
        "--metrics-port",
        "CERTFLEET_METRICS_PORT",
        "Prometheus metrics port; 0 turns the endpoint off",
        str(DEFAULT_METRICS_PORT),
        kind=int,
    )
    _option(
        report,
        "--metrics-address",
        "CERTFLEET_METRICS_ADDRESS",
        "address the metrics endpoint listens on",
        "0.0.0.0",  # noqa: S104 - a DaemonSet pod is scraped from outside
    )
    report.add_argument("--verbose", action="store_true")


@dataclass(frozen=True)
class AgentConfig:
    """The validated configuration (no secrets in its repr)."""

    location: DatastoreLocation
    s3_endpoint: str | None
    s3_region: str
    s3_addressing_style: str
    s3_ca_bundle: str | None
    access_key_id: str | None = field(repr=False)
    secret_access_key: str | None = field(repr=False)
    master_keys: tuple[MasterKey, ...]
    cert_root: Path
    webserver: CommandWebserver | None
    probe: TlsProber | None
    settings: AgentSettings
    once: bool
    certificate: tuple[str, str] | None  # (namespace, name) of the ManagedCertificate
    kubeconfig: str | None
    watch: bool
    metrics: tuple[str, int] | None


def _required(value: str | None, flag: str) -> str:
    if not value:
        raise AgentConfigError(f"{flag} is required")
    return value


def _read_secret_file(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as file:
            data = file.read(_SECRET_FILE_LIMIT + 1)
    except OSError as error:
        raise AgentConfigError(f"cannot read the {what} file {path}: {error.strerror}") from None
    if len(data) > _SECRET_FILE_LIMIT:
        raise AgentConfigError(f"the {what} file {path} is too large")
    return data


def config_from_args(args: argparse.Namespace) -> AgentConfig:
    try:
        domain = validate_domain(_required(args.domain, "--domain (WEBSITE_URL)"))
        directory_name(domain)
    except InvalidDomainError as error:
        raise AgentConfigError(f"--domain: {error}") from None
    try:
        location = DatastoreLocation(
            bucket=_required(args.s3_bucket, "--s3-bucket"),
            prefix=(args.s3_prefix or "").strip("/"),
            cloudhost=_required(args.cloudhost, "--cloudhost"),
            build_identifier=_required(args.build_identifier, "--build-identifier"),
            domain=domain,
        )
    except ValueError as error:
        raise AgentConfigError(str(error)) from None

    master_keys = []
    for path in args.master_key_file or []:
        data = _read_secret_file(path, "master key")
        if len(data) != MASTER_KEY_BYTES:
            raise AgentConfigError(
                f"the master key file {path} holds {len(data)} bytes, not {MASTER_KEY_BYTES}"
            )
        master_keys.append(MasterKey(data))
    if not master_keys:
        raise AgentConfigError("--master-key-file is required (it decrypts the private keys)")
    access_key = secret_key = None
    if args.access_key_id_file or args.secret_access_key_file:
        access_key = (
            _read_secret_file(
                _required(args.access_key_id_file, "--access-key-id-file"), "access key id"
            )
            .decode(errors="replace")
            .strip()
        )
        secret_key = (
            _read_secret_file(
                _required(args.secret_access_key_file, "--secret-access-key-file"),
                "secret access key",
            )
            .decode(errors="replace")
            .strip()
        )

    node = args.node_name or ""
    if not _NODE_NAME.fullmatch(node):
        raise AgentConfigError(f"--node-name {node!r} is not a node name")
    for flag, value in (
        ("--poll-interval", args.poll_interval),
        ("--probe-timeout", args.probe_timeout),
    ):
        if not value > 0:
            raise AgentConfigError(f"{flag} must be positive")

    webserver = None
    if args.reload:
        try:
            webserver = CommandWebserver.for_kind(
                WebserverKind(args.webserver),
                args.test_command,
                args.reload_command,
                args.command_timeout,
            )
        except ValueError as error:
            raise AgentConfigError(str(error)) from None
    probe = None
    if args.reload and args.probe_address.lower() not in ("", "none"):
        try:
            host, port = parse_host_port(args.probe_address)
        except ValueError as error:
            raise AgentConfigError(f"--probe-address: {error}") from None
        if port == 0:
            raise AgentConfigError("--probe-address: the webserver's port cannot be 0")
        server_name = args.probe_server_name or domain.replace("*", "certfleet-probe", 1)
        probe = TlsProber(
            host,
            port,
            server_name,
            Path(args.probe_ca_file) if args.probe_ca_file else None,
            timeout=min(5.0, args.probe_timeout),
        )
    certificate = None
    if args.certificate_namespace or args.certificate_name:
        certificate = (
            _required(args.certificate_namespace, "--certificate-namespace"),
            _required(args.certificate_name, "--certificate-name"),
        )
    return AgentConfig(
        location=location,
        s3_endpoint=args.s3_endpoint,
        s3_region=args.s3_region,
        s3_addressing_style=args.s3_addressing_style,
        s3_ca_bundle=args.s3_ca_bundle,
        access_key_id=access_key,
        secret_access_key=secret_key,
        master_keys=tuple(master_keys),
        cert_root=Path(args.cert_root),
        webserver=webserver,
        probe=probe,
        settings=AgentSettings(
            domain=domain,
            node=node,
            poll_interval=args.poll_interval,
            max_backoff=max(args.max_backoff, args.poll_interval),
            reload=args.reload,
            force=args.force,
            probe_timeout=args.probe_timeout,
            report_interval=args.report_interval,
            recheck_interval=args.recheck_interval,
        ),
        once=args.once,
        certificate=certificate,
        kubeconfig=args.kubeconfig,
        watch=args.watch and certificate is not None and not args.once,
        metrics=(args.metrics_address, args.metrics_port) if args.metrics_port else None,
    )
