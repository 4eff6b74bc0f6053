"""`certfleet agent`: the wiring of the agent from an AgentConfig, its signals and exit status.

Runs as a DaemonSet container on webserver nodes (the loop), or on a plain VM from cron or a
systemd timer (`--once`), or as an init step before the webserver starts on a fresh node
(`--once --no-reload`). One process serves every certificate it is given (`--domain` repeated,
or CERTFLEET_DOMAINS=a,b), to one webserver or several (`--webserver` repeated, each with the
domains it serves: certfleet.agent.webserver_config). Exit status with `--once`: 0 when the
node holds (and, with reloading, serves) the datastore's certificate of every domain, 1 when
not, 2 for a configuration error.

A plain VM, nightly from cron (the files of the CloudHost's two Secrets copied to the VM):

    WEBSITE_URL=www.example.com CERTFLEET_S3_BUCKET=my-bucket CERTFLEET_CLOUDHOST=aws-eu \
    CERTFLEET_BUILD_IDENTIFIER=build-7 CERTFLEET_MASTER_KEY_FILE=/etc/certfleet/master.key \
    AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... certfleet agent --once

In a cluster, the DaemonSet runs the loop with CERTFLEET_CERTIFICATE_NAMESPACE/NAME set, so
the node reports to the ManagedCertificate and watches it for an instant hint; the same
container with `--once --no-reload` is the init step of a webserver pod. The agent runs as the
webserver's user (the files are that user's, privkey.pem 0600) and reaches the webserver's
reload through its commands (`--reload-command`, e.g. `kill -HUP` of the master's pid in a
shared process namespace).
"""

from __future__ import annotations

import argparse
import logging
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, start_http_server

from certfleet.agent.certificate import CertificateSync
from certfleet.agent.config import AgentConfig, AgentConfigError, config_from_args
from certfleet.agent.installer import CertificateInstaller, directory_name
from certfleet.agent.loop import Agent
from certfleet.agent.metrics import AgentMetrics
from certfleet.agent.reporter import KubernetesStatusReporter, NullReporter, StatusReporter
from certfleet.agent.watch import CertificateWatch
from certfleet.core.addresses import is_plain_http_to_remote
from certfleet.core.errors import CertfleetError
from certfleet.datastore.client import s3_client as new_s3_client
from certfleet.datastore.s3_store import S3Datastore

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)


def s3_client(config: AgentConfig) -> S3Client:
    """Short timeouts and few retries: a poll that fails is simply tried next interval."""
    if config.s3_endpoint and is_plain_http_to_remote(config.s3_endpoint):
        # The agent only reads (pointers are checked, keys encrypted): said, not refused.
        log.warning(
            "the S3 endpoint %s is plain http:// to another host: what the agent reads can "
            "be seen and delayed on the way; use https://",
            config.s3_endpoint,
        )
    try:
        return new_s3_client(
            endpoint=config.s3_endpoint,
            region=config.s3_region,
            access_key_id=config.access_key_id,
            secret_access_key=config.secret_access_key,
            addressing_style=config.s3_addressing_style,
            ca_bundle=config.s3_ca_bundle,
            max_attempts=2,
        )
    except ValueError as error:  # botocore's invalid endpoint, region or config values
        raise AgentConfigError(f"the S3 settings are not usable: {error}") from None


def _custom_objects_api(config: AgentConfig) -> Any:
    # Imported here: an agent on a plain VM never loads the Kubernetes client.
    import yaml
    from kubernetes import client
    from kubernetes import config as kube_config

    try:
        if config.kubeconfig:
            api_client = kube_config.new_client_from_config(config_file=config.kubeconfig)
        else:
            configuration = client.Configuration()
            kube_config.load_incluster_config(client_configuration=configuration)
            api_client = client.ApiClient(configuration)
    except (kube_config.ConfigException, OSError, ValueError, yaml.YAMLError) as error:
        raise AgentConfigError(
            f"cannot reach Kubernetes for the status report (--kubeconfig or in-cluster): {error}"
        ) from None
    return client.CustomObjectsApi(api_client)


def kubernetes_reporter(config: AgentConfig, index: int = 0) -> StatusReporter:
    """The status report of the `index`th certificate (to its ManagedCertificate, if any)."""
    target = config.certificates[index].report_to
    if target is None:
        return NullReporter()
    namespace, name = target
    return KubernetesStatusReporter(
        _custom_objects_api(config), namespace, name, config.settings.node
    )


def start_watches(config: AgentConfig, agent: Agent) -> list[CertificateWatch]:
    """The instant hints (`--watch`), one per ManagedCertificate, started."""
    if not config.watch:
        return []
    watches = []
    for certificate in config.certificates:
        if certificate.report_to is None:
            continue
        namespace, name = certificate.report_to
        hint = CertificateWatch.for_certificate(
            _custom_objects_api(config), namespace, name, agent.request_sync
        )
        hint.start()
        watches.append(hint)
    return watches


def start_watch(config: AgentConfig, agent: Agent) -> CertificateWatch | None:
    """The first certificate's hint (a single domain's); None without a ManagedCertificate."""
    watches = start_watches(config, agent)
    return watches[0] if watches else None


def build_agent(
    config: AgentConfig,
    registry: CollectorRegistry | None = None,
    *,
    client: S3Client | None = None,
    reporter: StatusReporter | None = None,
) -> Agent:
    """The agent as `certfleet agent` runs it; tests pass their own client or reporter."""
    metrics = AgentMetrics(registry or CollectorRegistry())
    store = S3Datastore(client or s3_client(config), config.master_keys)
    settings = config.settings.for_certificates()
    certificates = [
        CertificateSync(
            certificate.location,
            settings,
            store,
            CertificateInstaller(
                config.cert_root,
                certificate.location.domain,
                modes=config.file_modes,
                combined_pem=certificate.combined_pem,
            ),
            certificate.probe,
            reporter or kubernetes_reporter(config, index),
            metrics.for_domain(certificate.location.domain),
            trust_roots=config.trust_roots,
        )
        for index, certificate in enumerate(config.certificates)
    ]
    webservers = {
        domain: each.webserver
        for each in config.webservers
        if each.webserver is not None
        for domain in each.domains
    }
    return Agent(config.settings, certificates, None, metrics, webservers=webservers)


def run(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
        registry = CollectorRegistry()
        agent = build_agent(config, registry)
    except CertfleetError as error:
        log.error("configuration: %s", error)
        return 2
    for certificate in config.certificates:
        log.info(
            "agent for %s on node %s: following %s into %s every %.1f s, served by %s",
            certificate.location.domain,
            config.settings.node,
            certificate.location.s3_uri,
            config.cert_root / directory_name(certificate.location.domain),
            config.settings.poll_interval,
            certificate.webserver,
        )
    if config.once:
        result = agent.sync_once()
        return 0 if result.ok else 1

    stops: list[Callable[[], None]] = []
    for hint in start_watches(config, agent):
        stops.append(hint.stop)
    if config.metrics is not None:
        server, _thread = start_http_server(config.metrics[1], config.metrics[0], registry)
        stops.append(server.shutdown)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: agent.stop())
    try:
        agent.run()
    finally:
        for stop in stops:
            stop()
    return 0
