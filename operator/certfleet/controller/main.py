"""`certfleet operator`: the composition root. Builds the ports over Kubernetes, S3 and ACME,
waits for the Lease, and runs kopf until stopped."""

from __future__ import annotations

import logging
import os
import signal
import threading
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import kopf
from kubernetes import client as kube_client
from kubernetes import config as kube_config

from certfleet.acme_issuer import ari
from certfleet.acme_issuer.http01 import ChallengeStore, Http01Server
from certfleet.api.names import CLOUDHOSTS, FINALIZER, GROUP, KOPF_ANNOTATION_PREFIX, VERSION
from certfleet.controller.acme_issuers import AcmeIssuers
from certfleet.controller.adapters import (
    CacheOwners,
    CloudHostDatastores,
    KubeTenancy,
    SecretAccountStore,
    SecretCache,
    SecretSuppliedCertificates,
    secret_value,
)
from certfleet.controller.backlog import BACKLOG_WORKERS, FRESH_WORKERS
from certfleet.controller.decide import DecisionSettings
from certfleet.controller.handlers import MAX_RENEWAL_SLEEP_SECONDS, RESOURCE, Runtime, register
from certfleet.controller.kopf_session import bounded_session
from certfleet.controller.liveness import standby_liveness
from certfleet.controller.metrics import OperatorMetrics
from certfleet.controller.ports import Ports
from certfleet.controller.reconcile import OrderLease, Reconciler
from certfleet.controller.renewal_windows import AriWindows
from certfleet.controller.solvers import ChallengeSolvers, Dns01Options
from certfleet.controller.trust_bundles import SecretTrustBundles, system_roots
from certfleet.core.clock import utc_now
from certfleet.kube.caches import CachedReads
from certfleet.kube.gateway import KubernetesGateway
from certfleet.kube.leader_label import LeaderLabel
from certfleet.kube.lease import LeaderElector
from certfleet.kube.secrets import TlsSecrets

# The renewal timers reconcile in asyncio's default pool (asyncio.to_thread), beside kopf's.
TIMER_WORKERS = min(32, (os.cpu_count() or 1) + 4)
# The threads that may each use a pooled connection at once (kopf's, the backlog's, the timers').
THREADS = FRESH_WORKERS + BACKLOG_WORKERS + TIMER_WORKERS


@dataclass(frozen=True)
class OperatorSettings:
    """Everything `certfleet operator` is told; the command line's defaults come from here."""

    namespace: str = "certfleet-system"  # for ACME account Secrets and the Lease
    http01_listen: tuple[str, int] = ("0.0.0.0", 8089)  # noqa: S104 - a pod's own address
    acme_ca_bundle: str | None = None
    decisions: DecisionSettings = field(default_factory=DecisionSettings)
    recheck_seconds: float = MAX_RENEWAL_SLEEP_SECONDS
    ari_min_ask_again_seconds: float = ari.DEFAULT_MIN_ASK_AGAIN_SECONDS
    ari_max_ask_again_seconds: float = ari.DEFAULT_MAX_ASK_AGAIN_SECONDS
    leader_election: bool = True
    lease_name: str = "certfleet-operator"
    lease_seconds: float = 15.0
    identity: str = "certfleet-operator"
    # This replica's pod (its namespace is `namespace`), labelled while it leads; None outside
    # a pod.
    pod_name: str | None = None
    metrics_listen: tuple[str, int] = ("0.0.0.0", 9090)  # noqa: S104
    liveness: str = "http://0.0.0.0:8080/healthz"
    verbose: bool = False
    dns01: Dns01Options = field(default_factory=Dns01Options)


def _configure_kopf(registry: kopf.OperatorRegistry, executor: Executor) -> None:
    # kopf says "Handler ... succeeded" and "... is processed" for every object at every
    # event, from its event loop: 4,000 lines at a cold start of 1,000, and the loop waited
    # on the logging lock behind the busy threads (py-spy: the main thread in
    # Handler.acquire) while a new resource's event waited seconds. kopf's warnings and
    # errors still show; certfleet logs each reconciliation's outcome itself, by name.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)

    @kopf.on.startup(registry=registry)
    def settings(settings: kopf.OperatorSettings, **_: Any) -> None:
        # kopf's bookkeeping under certfleet's own annotation prefix, not kopf.zalando.org.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
            prefix=KOPF_ANNOTATION_PREFIX
        )
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=KOPF_ANNOTATION_PREFIX, key="last-handled-configuration"
        )
        settings.persistence.finalizer = FINALIZER
        settings.posting.level = logging.WARNING  # events come from the handlers themselves
        settings.watching.server_timeout = 300
        # Every request of kopf's own has a deadline too (watches: the server's, plus slack).
        settings.watching.client_timeout = 330
        settings.watching.connect_timeout = 5
        settings.networking.connect_timeout = 5
        settings.networking.request_timeout = 30
        settings.execution.executor = executor  # the fresh pool (backlog.py)

    kopf.on.login(registry=registry)(bounded_session)


def _watch_cloudhosts(registry: kopf.OperatorRegistry, reads: CachedReads) -> None:
    """Every CloudHost event into the cache the reconciliations read (kube/caches.py)."""

    @kopf.on.event(GROUP, VERSION, CLOUDHOSTS, registry=registry)
    async def cloudhost_event(
        type: str | None, name: str | None, body: kopf.Body, **_: Any
    ) -> None:
        reads.observe_cloudhost(name or "", None if type == "DELETED" else dict(body))


def _index_cache_owners(registry: kopf.OperatorRegistry, owners: CacheOwners) -> None:
    """ManagedCertificate events into the index of cache Secret owners (adapters.py); called
    only for a new resource, spec generation or a deletion, as kopf logs every call."""

    def news(type: str | None, body: kopf.Body, **_: Any) -> bool:
        meta = body.metadata
        new = owners.changed(
            meta.namespace or "", meta.name or "", meta.uid or "", meta.get("generation")
        )
        return type == "DELETED" or new

    @kopf.on.event(*RESOURCE, registry=registry, when=news)
    async def index_cache_owners(type: str | None, body: kopf.Body, **_: Any) -> None:
        meta = body.metadata
        spec = None if type == "DELETED" else dict(body.spec)
        owners.observe(
            meta.namespace or "", meta.name or "", meta.uid or "", meta.get("generation"), spec
        )


def size_connection_pools() -> None:
    """One pooled API server connection per thread that may use one at once. urllib3 keeps
    CPUs x 5 by default (10 on 2 cores): beyond that, each request of the other threads opens a
    connection, with its TLS handshake, and throws it away ("Connection pool is full").
    Every ApiClient made afterwards (each gateway's) takes its pool size from here."""
    configuration = kube_client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = THREADS
    kube_client.Configuration.set_default(configuration)


def _ports(
    settings: OperatorSettings,
    metrics: OperatorMetrics,
    challenges: ChallengeStore,
    cluster: str,
    reads: CachedReads,
    owners: CacheOwners | None = None,
) -> Ports:
    gateway = KubernetesGateway()
    secrets = TlsSecrets(gateway)
    issuers = AcmeIssuers(
        SecretAccountStore(gateway, settings.namespace),
        challenges,
        secret_value(gateway),
        acme_ca_bundle=settings.acme_ca_bundle,
        on_acme_request=metrics.acme_request,
        solvers=ChallengeSolvers(gateway, settings.namespace, challenges, settings.dns01),
    )
    return Ports(
        datastores=CloudHostDatastores(
            reads, on_s3_client=metrics.instrument_s3_client, pool_size=THREADS
        ),
        cache=SecretCache(secrets, gateway, owners),
        supplied=SecretSuppliedCertificates(secrets),
        issuer=issuers,
        windows=AriWindows(
            issuers.for_directory,
            settings.ari_min_ask_again_seconds,
            settings.ari_max_ask_again_seconds,
        ),
        tenancy=KubeTenancy(gateway, settings.namespace, cluster),
        trust=SecretTrustBundles(secret_value(reads), system_roots()),
    )


def _lead(
    settings: OperatorSettings, stop: threading.Event, lost: threading.Event
) -> LeaderElector | None:
    """Waits until this replica may act; None when leader election is off."""
    if not settings.leader_election:
        return None

    def on_lost() -> None:
        # Stop acting at once, the way kopf stops on a SIGTERM; exit 1 to come back as a
        # standby. (kopf's stop_flag would be waited on in an executor thread that then keeps
        # the process from exiting.)
        lost.set()
        os.kill(os.getpid(), signal.SIGTERM)

    elector = LeaderElector(
        settings.namespace,
        settings.lease_name,
        settings.identity,
        duration=timedelta(seconds=settings.lease_seconds),
        retry_period=timedelta(seconds=max(settings.lease_seconds / 5, 0.2)),
    )
    with standby_liveness(settings.liveness):
        elector.acquire(stop)
    elector.keep_leading(on_lost=on_lost, stop=stop)
    return elector


def _lease_holder(settings: OperatorSettings, cluster: str | None) -> str:
    """Who holds the datastore's order lease: this operator installation, not this process.
    Within the cluster the Kubernetes Lease already lets one replica act, so a restarted or
    replaced replica takes the order lease over at once instead of waiting out its own."""
    if cluster is None:
        return f"operator {settings.identity}"  # no stable name: only this process
    return f"operator {settings.namespace}/{settings.lease_name} of cluster {cluster}"


def run(settings: OperatorSettings) -> int:
    kube_config.load_config()
    size_connection_pools()
    stop, lost = threading.Event(), threading.Event()
    metrics = OperatorMetrics()
    # Before the election: a standby is scraped too, and says it does not act.
    metrics_server = metrics.serve(*settings.metrics_listen)
    elector = _lead(settings, stop, lost)
    label = LeaderLabel(settings.namespace, settings.pod_name) if settings.pod_name else None
    if label is not None:
        label.claim()
    metrics.set_leader(True)
    challenges = ChallengeStore()
    http01 = Http01Server(challenges, *settings.http01_listen)
    http01.start()
    # This cluster's id names it in the order leases and in the owners of locations.
    cluster = KubernetesGateway().cluster_id()
    reads, owners = CachedReads(KubernetesGateway()), CacheOwners()
    runtime = Runtime(
        Reconciler(
            _ports(settings, metrics, challenges, cluster or "", reads, owners),
            utc_now,
            settings.decisions,
            OrderLease(holder=_lease_holder(settings, cluster)),
        ),
        KubernetesGateway(),
        utc_now,
        metrics=metrics,
        recheck_seconds=settings.recheck_seconds,
        cluster=cluster or "",
    )
    registry = kopf.OperatorRegistry()
    _configure_kopf(registry, runtime.pools.fresh)
    _watch_cloudhosts(registry, reads)
    _index_cache_owners(registry, owners)
    register(registry, runtime)
    try:
        kopf.run(
            registry=registry,
            clusterwide=True,
            standalone=True,
            liveness_endpoint=settings.liveness,
        )
    finally:
        http01.stop()
        metrics.set_leader(False)
        if label is not None:
            label.release()
        metrics_server.shutdown()
        stop.set()
        if elector is not None and not lost.is_set():
            elector.release()
    return 1 if lost.is_set() else 0
