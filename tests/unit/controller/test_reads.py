"""What a reconciliation reads from the API server, counted with a gateway that answers from
dicts: the cache Secret once, the CloudHost and its Secrets from memory; and the client's
connection pool as large as the threads that share it."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, cast

import kopf
import pytest
from kubernetes import client

from certfleet.acme_issuer.http01 import ChallengeStore
from certfleet.api.names import CLOUDHOSTS, GROUP, MANAGED_CERTIFICATES
from certfleet.api.spec import cache_secret_name, parse_certificate_spec
from certfleet.controller import backlog, main
from certfleet.controller.adapters import CacheOwners, CloudHostDatastores, SecretCache
from certfleet.controller.gather import gather
from certfleet.controller.metrics import OperatorMetrics
from certfleet.controller.plan import Observed, Request
from certfleet.controller.ports import Kept, PemPair, PendingOrder
from certfleet.kube.caches import CachedReads
from certfleet.kube.gateway import KubernetesGateway, OwnerReference, SecretData
from certfleet.kube.secrets import TlsSecrets
from unit.controller.resources import CLOUDHOST, NAMESPACE, SPEC
from unit.controller.test_reconcile import OWNER, FakeWorld
from unit.kube.test_gateway import FakeCore, gateway_over

KEY = b"-----BEGIN PRIVATE KEY-----\nMC4CAQ\n-----END PRIVATE KEY-----\n"
S3_KEYS = {"accessKeyID": b"id", "secretAccessKey": b"secret"}


class CountingGateway(KubernetesGateway):
    """The API server as dicts; `asked` lists every GET in order."""

    def __init__(self) -> None:
        super().__init__(client.ApiClient(client.Configuration()))
        self.cloudhosts: dict[str, Mapping[str, Any]] = {"aws": CLOUDHOST}
        self.secrets: dict[tuple[str, str], SecretData] = {
            ("ops", "creds"): SecretData("Opaque", S3_KEYS),
            ("ops", "key"): SecretData("Opaque", {"key": b"k" * 32}),
        }
        self.asked: list[str] = []

    def get_cloudhost(self, name: str) -> Mapping[str, Any] | None:
        self.asked.append(f"cloudhost {name}")
        return self.cloudhosts.get(name)

    def read_secret(self, namespace: str, name: str) -> SecretData | None:
        self.asked.append(f"secret {namespace}/{name}")
        return self.secrets.get((namespace, name))

    def write_secret(
        self,
        namespace: str,
        name: str,
        secret_type: str,
        data: Mapping[str, bytes],
        labels: Mapping[str, str],
        annotations: Mapping[str, str],
        owners: Sequence[OwnerReference] = (),
        *,
        update: Mapping[str, bytes] | None = None,
        exists: bool = False,
    ) -> None:
        self.secrets[(namespace, name)] = SecretData(secret_type, dict(data))


def test_a_gather_reads_the_cache_secret_once() -> None:
    """The certificate and the order under way are keys of one Secret: one GET (it was two,
    both 404 for a new certificate)."""
    gateway, world = CountingGateway(), FakeWorld()
    ports = dataclasses.replace(world.ports(), cache=SecretCache(TlsSecrets(gateway)))
    observed = gather(Request(NAMESPACE, SPEC, owner=OWNER), ports)
    assert isinstance(observed, Observed)
    name = cache_secret_name(parse_certificate_spec(SPEC))
    assert gateway.asked == [f"secret {NAMESPACE}/{name}"]
    assert (observed.cached, observed.pending) == (None, None)


def test_a_new_certificates_cache_secret_costs_one_read_and_two_writes() -> None:
    """The order is written with no read first (a patch keeps the certificate beside it),
    and the certificate with a patch, not a create answered 409: it was GET, GET, create,
    409, patch."""
    core = FakeCore()
    cache = SecretCache(TlsSecrets(gateway_over(core)))
    spec = parse_certificate_spec(SPEC)
    assert cache.read_kept(NAMESPACE, spec) == Kept(None, None)
    order = PendingOrder("https://ca/dir", "https://ca/acct", "https://ca/order", ("a",), KEY)
    cache.write_pending(NAMESPACE, spec, order)
    assert cache.read_kept(NAMESPACE, spec) == Kept(None, order)
    cache.write(NAMESPACE, spec, PemPair(b"chain", b"key"))
    assert cache.read_kept(NAMESPACE, spec) == Kept(PemPair(b"chain", b"key"), None)
    assert core.calls == ["get", "create", "get", "patch", "get"]
    cache.write_pending(NAMESPACE, spec, order)  # a renewal's order: the certificate stays
    assert cache.read_kept(NAMESPACE, spec) == Kept(PemPair(b"chain", b"key"), order)


def test_the_cache_secret_keeps_the_marker_of_a_certificate_not_published_yet() -> None:
    cache = SecretCache(TlsSecrets(gateway_over(FakeCore())))
    spec = parse_certificate_spec(SPEC)
    cache.write(NAMESPACE, spec, PemPair(b"renewal", b"key"), replaces=4)
    assert cache.read_kept(NAMESPACE, spec) == Kept(PemPair(b"renewal", b"key"), None, 4)
    cache.write(NAMESPACE, spec, PemPair(b"published", b"key"))  # a copy: the marker goes
    assert cache.read_kept(NAMESPACE, spec) == Kept(PemPair(b"published", b"key"), None, None)


def test_the_operator_reads_a_cloudhost_and_its_secrets_once_for_many_reconciliations() -> None:
    gateway = CountingGateway()
    reads = CachedReads(gateway)
    ports = main._ports(main.OperatorSettings(), OperatorMetrics(), ChallengeStore(), "c", reads)
    for _ in range(20):
        cloudhost, _datastore = ports.datastores.datastore("aws")
        ports.trust.roots(cloudhost)
    assert sorted(gateway.asked) == ["cloudhost aws", "secret ops/creds", "secret ops/key"]


def _cloudhost_handler(registry: kopf.OperatorRegistry) -> Any:
    handlers = [
        handler
        for handler in registry._watching.get_all_handlers()
        if handler.selector is not None
        and (handler.selector.group, handler.selector.any_name) == (GROUP, CLOUDHOSTS)
    ]
    assert len(handlers) == 1
    return handlers[0].fn


def test_the_cloudhost_watch_feeds_the_cache() -> None:
    gateway = CountingGateway()
    reads = CachedReads(gateway)
    registry = kopf.OperatorRegistry()
    main._watch_cloudhosts(registry, reads)
    handler = _cloudhost_handler(registry)
    changed: dict[str, Any] = {"spec": {**CLOUDHOST["spec"], "bucket": "moved"}}
    body = kopf.Body(cast(kopf.RawBody, changed))
    asyncio.run(handler(type="MODIFIED", name="aws", body=body))
    assert reads.get_cloudhost("aws") == changed
    asyncio.run(handler(type="DELETED", name="aws", body=body))
    assert reads.get_cloudhost("aws") is None
    assert gateway.asked == []


@pytest.fixture
def default_configuration() -> Iterator[None]:
    saved = client.Configuration._default
    try:
        yield
    finally:
        client.Configuration._default = saved


@pytest.mark.usefixtures("default_configuration")
def test_every_api_client_pools_a_connection_per_worker_thread() -> None:
    """urllib3 would keep CPUs x 5 (10 on 2 cores) for kopf's 32 handler threads, the
    backlog's and the timers', and open (and discard) a connection for every request beyond."""
    main.size_connection_pools()
    pool = KubernetesGateway()._core.api_client.rest_client.pool_manager
    threads = backlog.FRESH_WORKERS + backlog.BACKLOG_WORKERS + main.TIMER_WORKERS
    assert pool.connection_pool_kw["maxsize"] >= threads


def test_managed_certificate_events_feed_the_cache_owners_index() -> None:
    owners = CacheOwners()
    registry = kopf.OperatorRegistry()
    main._index_cache_owners(registry, owners)
    (handler,) = [
        handler
        for handler in registry._watching.get_all_handlers()
        if handler.selector is not None and handler.selector.any_name == MANAGED_CERTIFICATES
    ]
    fn: Any = handler.fn
    when: Any = handler.when
    raw = {"metadata": {"namespace": NAMESPACE, "name": "web", "uid": "u", "generation": 1}}
    body = kopf.Body(cast(kopf.RawBody, {**raw, "spec": SPEC}))
    assert when(type=None, body=body)
    asyncio.run(fn(type=None, body=body))
    assert not when(type="MODIFIED", body=body)  # a status patch: not called
    name = cache_secret_name(parse_certificate_spec(SPEC))
    assert [owner.uid for owner in owners.owners(NAMESPACE, name)] == ["u"]
    assert when(type="DELETED", body=body)
    asyncio.run(fn(type="DELETED", body=body))
    assert owners.owners(NAMESPACE, name) == []


def test_every_s3_client_pools_a_connection_per_worker_thread() -> None:
    """botocore keeps 10 connections a client; the handler threads and the timers' share one
    CloudHost's client."""
    made: list[Any] = []
    datastores = CloudHostDatastores(CountingGateway(), on_s3_client=made.append, pool_size=38)
    datastores.datastore("aws")
    (s3,) = made
    assert s3.meta.config.max_pool_connections == 38
