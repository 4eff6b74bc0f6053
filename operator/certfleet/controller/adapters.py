"""The controller's ports over the real world: Kubernetes Secrets and CloudHosts, S3, ACME.

Each class implements one port of ``controller.ports``; the CA's renewal windows have a module
of their own (``renewal_windows``), the status reporter too (``reporter``), and the Issuer
(``acme_issuers``), which the build machine shares.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from certfleet.acme_issuer.accounts import AccountId, StoredAccount
from certfleet.api.names import (
    ACCOUNT_DIRECTORY_ANNOTATION,
    ACCOUNT_KEY,
    ACCOUNT_LABEL,
    ACCOUNT_NAMESPACE_ANNOTATION,
    ACCOUNT_URL_ANNOTATION,
    BUILD_IDENTIFIER_ANNOTATION,
    CACHE_LABEL,
    CLOUDHOST_ANNOTATION,
    DOMAIN_ANNOTATION,
    GROUP,
    MANAGED_CERTIFICATE_KIND,
    MASTER_KEY,
    S3_ACCESS_KEY_ID,
    S3_SECRET_ACCESS_KEY,
    TLS_CERT_KEY,
    TLS_PRIVATE_KEY,
    TLS_SECRET_TYPE,
    VERSION,
)
from certfleet.api.spec import (
    CertificateSpec,
    CloudHostConfig,
    InvalidSpecError,
    ObjectRef,
    cache_secret_name,
    parse_certificate_spec,
    parse_cloudhost,
)
from certfleet.api.tenancy import admits
from certfleet.controller import pending_orders, unpublished
from certfleet.controller.acme_issuers import SecretValue
from certfleet.controller.gather import DatastoreNotConfiguredError
from certfleet.controller.ports import Kept, PemPair, PendingOrder
from certfleet.core.errors import CertfleetError
from certfleet.core.ownership import LocationOwner, OwnerKind
from certfleet.datastore.client import s3_client
from certfleet.datastore.encryption import MASTER_KEY_BYTES, MasterKey
from certfleet.datastore.protocol import Datastore
from certfleet.datastore.s3_store import S3Datastore
from certfleet.kube.caches import Reads
from certfleet.kube.gateway import KubernetesGateway, OwnerReference, SecretData

log = logging.getLogger(__name__)


class TlsStore(Protocol):
    """What the Secret-backed ports need of ``kube.secrets.TlsSecrets``."""

    def read(self, namespace: str, name: str) -> tuple[bytes, bytes] | None: ...

    def read_all(self, namespace: str, name: str) -> Mapping[str, bytes] | None: ...

    def write(
        self,
        namespace: str,
        name: str,
        fullchain: bytes | None,
        key: bytes | None,
        labels: Mapping[str, str],
        annotations: Mapping[str, str],
        owners: Sequence[OwnerReference] = (),
        extra: Mapping[str, bytes] | None = None,
        exists: bool = False,
    ) -> None:
        """A pair of None keeps the Secret's own; `exists`: it was seen (patch first)."""


class CertificateLister(Protocol):
    def list_certificates(self, namespace: str) -> list[Mapping[str, Any]]: ...


class CacheOwners:
    """Who owns each cache Secret (every ManagedCertificate of its namespace naming the same
    (domain, cloudhost, build)), kept from the operator's watch of ManagedCertificates: a
    cache write then needs no LIST of its namespace (a page of up to 500 resources, each spec
    parsed, per write). Fed by ``controller.main``; a spec is parsed once per generation."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (namespace, name) -> (its cache Secret or None for a bad spec, uid, generation)
        self._seen: dict[tuple[str, str], tuple[str | None, str, object]] = {}
        self._owners: dict[tuple[str, str], dict[str, str]] = {}  # (ns, Secret) -> name: uid

    def changed(self, namespace: str, name: str, uid: str, generation: object) -> bool:
        """Whether a watch event tells something new: a resource, uid or spec generation."""
        with self._lock:
            seen = self._seen.get((namespace, name))
        return seen is None or seen[1:] != (uid, generation)

    def observe(
        self,
        namespace: str,
        name: str,
        uid: str,
        generation: object,
        spec: Mapping[str, Any] | None,
    ) -> None:
        """A watch event of a ManagedCertificate; `spec` None: it was deleted."""
        secret = None
        if spec is not None:
            try:
                secret = cache_secret_name(parse_certificate_spec(spec))
            except (CertfleetError, ValueError):  # a bad spec owns nothing
                secret = None
        with self._lock:
            old = self._seen.pop((namespace, name), None)
            if old is not None and old[0] is not None:
                owners = self._owners.get((namespace, old[0]), {})
                owners.pop(name, None)
                if not owners:
                    self._owners.pop((namespace, old[0]), None)
            if spec is None:
                return
            self._seen[(namespace, name)] = (secret, uid, generation)
            if secret is not None and uid:
                self._owners.setdefault((namespace, secret), {})[name] = uid

    def owners(self, namespace: str, secret: str) -> list[OwnerReference]:
        with self._lock:
            found = sorted(self._owners.get((namespace, secret), {}).items())
        return [
            OwnerReference(f"{GROUP}/{VERSION}", MANAGED_CERTIFICATE_KIND, name, uid)
            for name, uid in found
        ]


class SecretCache:
    """The cache (DESIGN step 2) in a cluster: a kubernetes.io/tls Secret in the resource's
    namespace, named after (domain, cloudhost, build), so an Ingress can use it too.

    The ACME order under way is kept in the same Secret (``pending_orders``: two more keys,
    emptied when its certificate is written), so the order's key is where the certificate's
    is, and nowhere else; and so is the marker of a certificate not published yet
    (``unpublished``).

    Its owners are the namespace's ManagedCertificates of that (domain, cloudhost, build): when
    the last is deleted, the garbage collector deletes the Secret and the key in it.
    """

    def __init__(
        self,
        secrets: TlsStore,
        certificates: CertificateLister | None = None,
        owners: CacheOwners | None = None,
    ) -> None:
        """`owners`: the watch's index; `certificates` is listed only when it knows none."""
        self._secrets = secrets
        self._certificates = certificates
        self._index = owners
        # Cache Secrets seen to exist: written with a patch at once, not a create answered
        # 409 first (a hint: a Secret deleted since is created after the patch's 404).
        self._seen: set[tuple[str, str]] = set()

    def name(self, namespace: str, spec: CertificateSpec) -> str:
        return cache_secret_name(spec)

    def read_kept(self, namespace: str, spec: CertificateSpec) -> Kept:
        # One GET for both: the certificate and the order are keys of the same Secret.
        data = self._secrets.read_all(namespace, cache_secret_name(spec))
        if data is None:
            self._seen.discard((namespace, cache_secret_name(spec)))
            return Kept(pair=None, pending=None)
        self._seen.add((namespace, cache_secret_name(spec)))
        found = (data.get(TLS_CERT_KEY) or b"", data.get(TLS_PRIVATE_KEY) or b"")
        pending = pending_orders.read_pending_order(
            data.get(pending_orders.ORDER_KEY), data.get(pending_orders.PRIVATE_KEY_KEY)
        )
        # Empty pair: only an order under way is kept.
        pair = PemPair(*found) if found != (b"", b"") else None
        replaces = unpublished.read_marker(data.get(unpublished.REPLACES_KEY))
        return Kept(pair, pending, replaces)

    def write(
        self, namespace: str, spec: CertificateSpec, pair: PemPair, replaces: int | None = None
    ) -> None:
        # One patch: the marker never stands beside another certificate.
        extra = {
            pending_orders.ORDER_KEY: b"",
            pending_orders.PRIVATE_KEY_KEY: b"",
            unpublished.REPLACES_KEY: unpublished.marker(replaces),
        }
        self._write(namespace, spec, pair.fullchain, pair.key, extra)

    def write_pending(self, namespace: str, spec: CertificateSpec, order: PendingOrder) -> None:
        # The certificate kept so far stays: a patch of the order's keys only, no read first.
        pending = {
            pending_orders.ORDER_KEY: pending_orders.order_document(order),
            pending_orders.PRIVATE_KEY_KEY: order.key,
        }
        self._write(namespace, spec, None, None, pending)

    def _write(
        self,
        namespace: str,
        spec: CertificateSpec,
        fullchain: bytes | None,
        key: bytes | None,
        extra: Mapping[str, bytes],
    ) -> None:
        name = cache_secret_name(spec)
        self._secrets.write(
            namespace,
            name,
            fullchain,
            key,
            exists=(namespace, name) in self._seen,
            extra=extra,
            labels={CACHE_LABEL: "true"},
            annotations={
                DOMAIN_ANNOTATION: spec.domain,
                CLOUDHOST_ANNOTATION: spec.cloudhost,
                BUILD_IDENTIFIER_ANNOTATION: spec.build_identifier,
            },
            owners=self._owners(namespace, spec),
        )
        self._seen.add((namespace, name))

    def _owners(self, namespace: str, spec: CertificateSpec) -> list[OwnerReference]:
        """Best effort: a cache without owners still saves an order, so a failed list only
        costs the garbage collection (the next write tries again)."""
        if self._index is not None:
            indexed = self._index.owners(namespace, cache_secret_name(spec))
            if indexed:
                return indexed
        if self._certificates is None:
            return []
        try:
            listed = self._certificates.list_certificates(namespace)
        except CertfleetError as error:
            log.warning("cache Secret in %s written without owners: %s", namespace, error)
            return []
        wanted = cache_secret_name(spec)
        owners = []
        for item in listed:
            metadata, raw = item.get("metadata"), item.get("spec")
            if not isinstance(metadata, dict) or not isinstance(raw, dict):
                continue
            name, uid = metadata.get("name"), metadata.get("uid")
            try:
                same = cache_secret_name(parse_certificate_spec(raw)) == wanted
            except (CertfleetError, ValueError):  # another resource's bad spec
                continue
            if same and isinstance(name, str) and isinstance(uid, str):
                owners.append(
                    OwnerReference(f"{GROUP}/{VERSION}", MANAGED_CERTIFICATE_KIND, name, uid)
                )
        return owners


class SecretSuppliedCertificates:
    """MANUAL certificates: the kubernetes.io/tls Secret that ``spec.manual.secretName``
    names, in the resource's namespace."""

    def __init__(self, secrets: TlsStore) -> None:
        self._secrets = secrets

    def describe(self, namespace: str, spec: CertificateSpec) -> str:
        return f"the {TLS_SECRET_TYPE} Secret {namespace}/{spec.manual_secret_name}"

    def read(self, namespace: str, spec: CertificateSpec) -> PemPair | None:
        if spec.manual_secret_name is None:
            return None
        found = self._secrets.read(namespace, spec.manual_secret_name)
        return PemPair(*found) if found is not None else None


class CloudHostDatastores:
    """A CloudHost names its bucket and two Secrets (S3 credentials, the master key). S3
    clients are reused while the configuration and the credentials stay the same. In the
    operator both are read through ``kube.caches.CachedReads``: from the CloudHost watch, and
    the Secrets at most every few seconds."""

    def __init__(
        self,
        gateway: Reads,
        on_s3_client: Callable[[Any], None] | None = None,
        pool_size: int = 10,
    ) -> None:
        """`on_s3_client` is told of every new S3 client (metrics count its calls);
        `pool_size`: the threads that may use one client at once."""
        self._gateway = gateway
        self._on_s3_client = on_s3_client
        self._pool_size = pool_size
        self._datastores: dict[tuple[Any, ...], S3Datastore] = {}
        self._lock = threading.Lock()

    def datastore(self, cloudhost: str) -> tuple[CloudHostConfig, Datastore]:
        raw = self._gateway.get_cloudhost(cloudhost)
        if raw is None:
            raise DatastoreNotConfiguredError(
                f"CloudHost {cloudhost!r} does not exist: create it to say where the "
                "datastore of this cloudhost is"
            )
        try:
            config = parse_cloudhost(cloudhost, raw.get("spec") or {})
        except InvalidSpecError as error:
            raise DatastoreNotConfiguredError(str(error)) from None
        return config, self._datastore(config)

    def _secret(self, ref: ObjectRef, what: str) -> SecretData:
        secret = self._gateway.read_secret(ref.namespace, ref.name)
        if secret is None:
            raise DatastoreNotConfiguredError(
                f"the {what} Secret {ref.namespace}/{ref.name} does not exist"
            )
        return secret

    def _datastore(self, cloudhost: CloudHostConfig) -> S3Datastore:
        credentials = self._secret(cloudhost.credentials, "credentials")
        access_key = credentials.value(S3_ACCESS_KEY_ID)
        secret_key = credentials.value(S3_SECRET_ACCESS_KEY)
        if not access_key or not secret_key:
            raise DatastoreNotConfiguredError(
                f"Secret {cloudhost.credentials.namespace}/{cloudhost.credentials.name} needs "
                f"the keys {S3_ACCESS_KEY_ID} and {S3_SECRET_ACCESS_KEY}"
            )
        # The current key first (it seals everything new), then those being rotated out.
        masters = [
            self._master_key(ref)
            for ref in (cloudhost.encryption_key, *cloudhost.previous_encryption_keys)
        ]
        identity = (
            cloudhost,
            hashlib.sha256(access_key + secret_key + b"".join(masters)).hexdigest(),
        )
        with self._lock:
            if identity not in self._datastores:
                try:
                    client = s3_client(
                        endpoint=cloudhost.endpoint,
                        region=cloudhost.region,
                        access_key_id=access_key.decode(),
                        secret_access_key=secret_key.decode(),
                        addressing_style=cloudhost.addressing_style,
                        max_pool_connections=self._pool_size,
                    )
                except ValueError as error:  # botocore refuses the endpoint or region
                    raise DatastoreNotConfiguredError(
                        f"CloudHost {cloudhost.name}: the S3 settings are not usable: {error}"
                    ) from None
                if self._on_s3_client is not None:
                    self._on_s3_client(client)
                self._datastores[identity] = S3Datastore(
                    client, [MasterKey(master) for master in masters]
                )
            return self._datastores[identity]

    def _master_key(self, ref: ObjectRef) -> bytes:
        master = self._secret(ref, "encryption key").value(MASTER_KEY)
        if master is None or len(master) != MASTER_KEY_BYTES:
            raise DatastoreNotConfiguredError(
                f"Secret {ref.namespace}/{ref.name} needs the key '{MASTER_KEY}' holding "
                f"{MASTER_KEY_BYTES} random bytes"
            )
        return master


class KubeTenancy:
    """The Tenancy port in a cluster: a namespace's labels admit it to a CloudHost (read only
    when the CloudHost's own list does not), and an owner of this cluster exists while a
    ManagedCertificate of its namespace, name and uid does (and is not being deleted)."""

    def __init__(self, gateway: KubernetesGateway, operator_namespace: str, cluster: str) -> None:
        self._gateway = gateway
        self._operator_namespace = operator_namespace
        self._cluster = cluster

    def admits(self, cloudhost: CloudHostConfig, namespace: str) -> bool:
        if admits(cloudhost, namespace, self._operator_namespace, None):
            return True
        labels = self._gateway.namespace_labels(namespace)
        return admits(cloudhost, namespace, self._operator_namespace, labels)

    def owner_exists(self, owner: LocationOwner) -> bool | None:
        # Another cluster's resources (or an unknown cluster id) cannot be looked up here.
        if owner.kind is not OwnerKind.RESOURCE or not self._cluster:
            return None
        if owner.cluster != self._cluster:
            return None
        namespace, name = owner.name.split("/", 1)
        return self._gateway.live_certificate_uid(namespace, name) == owner.uid


class SecretAccountStore:
    """acme_issuer's account store over Secrets: one ACME account per `AccountId` (CA
    directory, email, namespace, EAB key id), its key in a Secret of the operator's
    namespace, so every replica and every restart reuses the same account."""

    def __init__(self, gateway: KubernetesGateway, namespace: str) -> None:
        self._gateway = gateway
        self._namespace = namespace

    @staticmethod
    def secret_name(account: AccountId) -> str:
        return f"certfleet-acme-account-{account.digest()}"

    def load(self, account: AccountId) -> StoredAccount | None:
        secret = self._gateway.read_secret(self._namespace, self.secret_name(account))
        if secret is None or not secret.value(ACCOUNT_KEY):
            return None
        url = secret.annotations.get(ACCOUNT_URL_ANNOTATION, "")
        return StoredAccount(key_json=(secret.value(ACCOUNT_KEY) or b"").decode(), account_url=url)

    def save(self, account: AccountId, stored: StoredAccount) -> None:
        annotations = {
            ACCOUNT_URL_ANNOTATION: stored.account_url,
            ACCOUNT_DIRECTORY_ANNOTATION: account.directory_url,
        }
        if account.namespace is not None:
            annotations[ACCOUNT_NAMESPACE_ANNOTATION] = account.namespace
        self._gateway.write_secret(
            self._namespace,
            self.secret_name(account),
            "Opaque",
            {ACCOUNT_KEY: stored.key_json.encode()},
            labels={ACCOUNT_LABEL: "true"},
            annotations=annotations,
        )


class SecretReads(Protocol):
    def read_secret(self, namespace: str, name: str) -> SecretData | None: ...


def secret_value(gateway: SecretReads) -> SecretValue:
    """The Issuer's SecretValue over Secrets of the resource's namespace."""

    def value(namespace: str, name: str, key: str) -> bytes | None:
        secret = gateway.read_secret(namespace, name)
        return secret.value(key) if secret is not None else None

    return value
