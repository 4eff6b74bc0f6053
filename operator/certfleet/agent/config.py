"""`certfleet agent`'s configuration: its flags, each with an environment variable (for a
container or a unit file), validated into an AgentConfig. Defaults that the agent's parts
already have (AgentSettings, the webserver's command timeout) are read from them, not repeated.
"""

from __future__ import annotations

import argparse
import grp
import os
import pwd
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from cryptography import x509

from certfleet.agent.installer import DEFAULT_MODES, FileModes, directory_name
from certfleet.agent.loop import AgentSettings
from certfleet.agent.probe import TlsProber
from certfleet.agent.trust import TrustBundleFileError, trust_roots
from certfleet.agent.webserver import DEFAULT_TIMEOUT_SECONDS, Webserver, WebserverKind
from certfleet.agent.webserver_config import (
    WebserverConfig,
    WebserverConfigError,
    split_specs,
    webservers_from_args,
)
from certfleet.core.addresses import parse_host_port
from certfleet.core.domains import validate_domain
from certfleet.core.errors import CertfleetError, InvalidDomainError
from certfleet.datastore.encryption import MASTER_KEY_BYTES, MasterKey
from certfleet.datastore.location import DatastoreLocation

DEFAULT_METRICS_PORT = 9477
_NODE_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?")
_SECRET_FILE_LIMIT = 4096
MAX_DOMAINS = 100  # one process, one poll each per interval: a bound on its S3 traffic


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
        help=f"file of {MASTER_KEY_BYTES} bytes that decrypts the private keys and authenticates "
        "the pointer: the key 'key' of the CloudHost's encryption key Secret; repeat it during "
        "a key rotation, each is picked by its key id (CERTFLEET_MASTER_KEY_FILE, several "
        "joined by ':')",
    )
    _option(s3, "--cloudhost", "CERTFLEET_CLOUDHOST", "the CloudHost's name (required)")
    _option(s3, "--build-identifier", "CERTFLEET_BUILD_IDENTIFIER", "the build (required)")
    env_domains = _env("CERTFLEET_DOMAINS") or _env("WEBSITE_URL") or _env("CERTFLEET_DOMAIN")
    s3.add_argument(
        "--domain",
        action="append",
        help="a certificate's domain (required); repeat it for every certificate this node "
        "serves: one process polls each, reloads the webserver once per batch of changes "
        "(CERTFLEET_DOMAINS, several joined by ','; WEBSITE_URL or CERTFLEET_DOMAIN for one)",
    )
    parser.set_defaults(env_domains=env_domains.split(",") if env_domains else [])

    node = parser.add_argument_group("the node")
    _option(
        node,
        "--cert-root",
        "CERTFLEET_CERT_ROOT",
        "files go to CERT_ROOT/<domain>/fullchain.pem and privkey.pem",
        str(Path.home() / "ssl" / "live"),
    )
    kinds = ", ".join(kind.value for kind in WebserverKind)
    node.add_argument(
        "--webserver",
        action="append",
        metavar="KIND [KEY=VALUE...]",
        help=f"the webserver to test and reload: {kinds} (default nginx); repeat it for each "
        "webserver of the node, with the domains= it serves and its own test=, reload=, "
        "pid-file=, probe= (CERTFLEET_WEBSERVER, several separated by ';')",
    )
    env_webservers = _env("CERTFLEET_WEBSERVER")
    parser.set_defaults(env_webservers=split_specs(env_webservers) if env_webservers else [])
    _option(
        node,
        "--test-command",
        "CERTFLEET_TEST_COMMAND",
        "replaces the kind's configuration test; '' skips the test (with several "
        "--webserver: each one's test=)",
    )
    _option(
        node,
        "--reload-command",
        "CERTFLEET_RELOAD_COMMAND",
        "replaces the kind's reload (with several --webserver: each one's reload=)",
    )
    _option(
        node,
        "--webserver-pid-file",
        "CERTFLEET_WEBSERVER_PID_FILE",
        "reload by sending the kind's graceful-reload signal to the pid in this file (the "
        "master process's), instead of its reload command (a VM without systemd; with several "
        "--webserver: each one's pid-file=)",
    )
    _option(
        node,
        "--file-owner",
        "CERTFLEET_FILE_OWNER",
        "owner (user name or uid) of the installed files and folders; default the agent's",
    )
    _option(
        node,
        "--file-group",
        "CERTFLEET_FILE_GROUP",
        "group (name or gid) of the installed files and folders, e.g. the webserver's "
        "www-data, whose workers then read the key; default the agent's",
    )
    _option(
        node,
        "--file-mode",
        "CERTFLEET_FILE_MODE",
        "octal mode of privkey.pem (and combined.pem); at most 0660",
        f"{DEFAULT_MODES.key_file:04o}",
    )
    _option(
        node,
        "--dir-mode",
        "CERTFLEET_DIR_MODE",
        "octal mode of the folders certfleet makes under the root; never world-writable",
        f"{DEFAULT_MODES.directory:04o}",
    )
    node.add_argument(
        "--combined-pem",
        action=argparse.BooleanOptionalAction,
        default=_env("CERTFLEET_COMBINED_PEM", "false") in ("true", "1", "yes"),
        help="also write combined.pem (chain then key, in one file) beside the pair, for "
        "haproxy (CERTFLEET_COMBINED_PEM; default on for --webserver haproxy)",
    )
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
        "SNI of the probe, with a single domain; default each domain",
    )
    _option(
        node,
        "--probe-ca-file",
        "CERTFLEET_PROBE_CA_FILE",
        "also verify the served chain and name against this CA file",
    )
    _option(  # verified chains (agent/trust.py)
        node,
        "--trust-bundle",
        "CERTFLEET_TRUST_BUNDLE",
        "PEM roots, beside the system's (certifi), that every certificate installed must chain "
        "to: the CloudHost's spec.trustBundle, for a private CA",
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
        help=(
            "install the datastore's certificate even if its revision is below the installed one's"
        ),
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
        "name of the ManagedCertificate to report to; with several domains, one name per "
        "domain in the same order, joined by ','",
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
class CertificateConfig:
    """One certificate the agent serves: where it is stored, how it is probed, where reported."""

    location: DatastoreLocation
    probe: TlsProber | None
    report_to: tuple[str, str] | None  # (namespace, name) of its ManagedCertificate
    webserver: str  # the name of the WebserverConfig that serves it
    combined_pem: bool = False  # also write combined.pem (haproxy)


@dataclass(frozen=True)
class AgentConfig:
    """The validated configuration (no secrets in its repr)."""

    certificates: tuple[CertificateConfig, ...]
    s3_endpoint: str | None
    s3_region: str
    s3_addressing_style: str
    s3_ca_bundle: str | None
    access_key_id: str | None = field(repr=False)
    secret_access_key: str | None = field(repr=False)
    master_keys: tuple[MasterKey, ...]
    cert_root: Path
    file_modes: FileModes
    webservers: tuple[WebserverConfig, ...]
    settings: AgentSettings
    once: bool
    kubeconfig: str | None
    watch: bool
    metrics: tuple[str, int] | None
    # What every installed certificate must chain to (--trust-bundle and the system's).
    trust_roots: tuple[x509.Certificate, ...] = field(repr=False)

    # The first certificate's, for a single domain (the common case).
    @property
    def location(self) -> DatastoreLocation:
        return self.certificates[0].location

    @property
    def probe(self) -> TlsProber | None:
        return self.certificates[0].probe

    @property
    def certificate(self) -> tuple[str, str] | None:
        return self.certificates[0].report_to

    @property
    def combined_pem(self) -> bool:
        return self.certificates[0].combined_pem

    @property
    def webserver(self) -> Webserver | None:
        """The first webserver (the only one, in the common case)."""
        return self.webservers[0].webserver


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


def _domains(args: argparse.Namespace) -> list[str]:
    given = args.domain or getattr(args, "env_domains", [])
    names = [name.strip() for each in given for name in each.split(",") if name.strip()]
    if not names:
        raise AgentConfigError("--domain is required (WEBSITE_URL, CERTFLEET_DOMAINS)")
    if len(names) > MAX_DOMAINS:
        raise AgentConfigError(f"--domain: at most {MAX_DOMAINS} domains per agent")
    domains = []
    for name in names:
        try:
            domain = validate_domain(name)
            directory_name(domain)
        except InvalidDomainError as error:
            raise AgentConfigError(f"--domain: {error}") from None
        if domain in domains:
            raise AgentConfigError(f"--domain: {domain} is listed twice")
        domains.append(domain)
    return domains


def _report_targets(args: argparse.Namespace, count: int) -> list[tuple[str, str] | None]:
    if not (args.certificate_namespace or args.certificate_name):
        return [None] * count
    namespace = _required(args.certificate_namespace, "--certificate-namespace")
    names = [
        name.strip()
        for name in _required(args.certificate_name, "--certificate-name").split(",")
        if name.strip()
    ]
    if len(names) != count:
        raise AgentConfigError(
            f"--certificate-name names {len(names)} ManagedCertificates for {count} domains: "
            "give one per domain, in the order of --domain"
        )
    return [(namespace, name) for name in names]


def _id(value: str | None, flag: str, lookup: Callable[[str], int]) -> int | None:
    if not value:
        return None
    if value.isdigit():
        return int(value)
    try:
        return lookup(value)
    except KeyError:
        raise AgentConfigError(f"{flag}: no such user or group {value!r}") from None


def _mode(value: str, flag: str) -> int:
    try:
        return int(value, 8)
    except ValueError:
        raise AgentConfigError(f"{flag}: {value!r} is not an octal mode like 0640") from None


def _file_modes(args: argparse.Namespace) -> FileModes:
    try:
        return FileModes(
            owner=_id(args.file_owner, "--file-owner", lambda n: pwd.getpwnam(n).pw_uid),
            group=_id(args.file_group, "--file-group", lambda n: grp.getgrnam(n).gr_gid),
            key_file=_mode(args.file_mode, "--file-mode"),
            directory=_mode(args.dir_mode, "--dir-mode"),
        )
    except ValueError as error:
        raise AgentConfigError(str(error)) from None


def _probe(args: argparse.Namespace, domain: str, single: bool, address: str) -> TlsProber | None:
    if not args.reload or address.lower() in ("", "none"):
        return None
    try:
        host, port = parse_host_port(address)
    except ValueError as error:
        raise AgentConfigError(f"--probe-address {address!r}: {error}") from None
    if port == 0:
        raise AgentConfigError("--probe-address: the webserver's port cannot be 0")
    if args.probe_server_name and not single:
        raise AgentConfigError("--probe-server-name: with several domains each is its own SNI")
    server_name = args.probe_server_name or domain.replace("*", "certfleet-probe", 1)
    return TlsProber(
        host,
        port,
        server_name,
        Path(args.probe_ca_file) if args.probe_ca_file else None,
        timeout=min(5.0, args.probe_timeout),
    )


def config_from_args(args: argparse.Namespace) -> AgentConfig:
    domains = _domains(args)
    bucket = _required(args.s3_bucket, "--s3-bucket")
    cloudhost = _required(args.cloudhost, "--cloudhost")
    build = _required(args.build_identifier, "--build-identifier")
    try:
        locations = [
            DatastoreLocation(
                bucket=bucket,
                prefix=(args.s3_prefix or "").strip("/"),
                cloudhost=cloudhost,
                build_identifier=build,
                domain=domain,
            )
            for domain in domains
        ]
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

    try:
        webservers = webservers_from_args(args, tuple(domains))
    except WebserverConfigError as error:
        raise AgentConfigError(str(error)) from None
    server_of = {domain: each for each in webservers for domain in each.domains}
    targets = _report_targets(args, len(domains))
    certificates = tuple(
        CertificateConfig(
            location,
            _probe(
                args,
                location.domain,
                len(domains) == 1,
                server_of[location.domain].probe_address,
            ),
            target,
            webserver=server_of[location.domain].name,
            combined_pem=args.combined_pem or server_of[location.domain].combined_pem,
        )
        for location, target in zip(locations, targets, strict=True)
    )
    reporting = targets[0] is not None
    return AgentConfig(
        certificates=certificates,
        s3_endpoint=args.s3_endpoint,
        s3_region=args.s3_region,
        s3_addressing_style=args.s3_addressing_style,
        s3_ca_bundle=args.s3_ca_bundle,
        access_key_id=access_key,
        secret_access_key=secret_key,
        master_keys=tuple(master_keys),
        cert_root=Path(args.cert_root),
        file_modes=_file_modes(args),
        webservers=webservers,
        settings=AgentSettings(
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
        kubeconfig=args.kubeconfig,
        watch=args.watch and reporting and not args.once,
        metrics=(args.metrics_address, args.metrics_port) if args.metrics_port else None,
        trust_roots=_trust_roots(args),
    )


def _trust_roots(args: argparse.Namespace) -> tuple[x509.Certificate, ...]:
    try:
        return trust_roots(args.trust_bundle)
    except TrustBundleFileError as error:
        raise AgentConfigError(f"--trust-bundle: {error}") from None
