"""The reconciler's ports over the real world: Kubernetes Secrets and CloudHosts, S3, ACME."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from certfleet.acme_issuer import ari
from certfleet.acme_issuer.accounts import StoredAccount
from certfleet.acme_issuer.directories import resolve_directory_url
from certfleet.acme_issuer.errors import InvalidAcmeServerError
from certfleet.acme_issuer.http01 import ChallengeStore
from certfleet.acme_issuer.issuer import AcmeIssuer
from certfleet.acme_issuer.keys import KeyAlgorithm
from certfleet.acme_issuer.transport import RequestHook
from certfleet.api.spec import CertificateSpec, CloudHostConfig, ObjectRef
from certfleet.controller.reconciler import (
    TLS_CERT_KEY,
    TLS_PRIVATE_KEY,
    TLS_SECRET_TYPE,
    DatastoreNotConfiguredError,
    IssuedCertificate,
)
from certfleet.core.errors import CertfleetError
from certfleet.datastore.client import s3_client
from certfleet.datastore.encryption import MASTER_KEY_BYTES, MasterKey
from certfleet.datastore.s3_store import S3Datastore
from certfleet.kube.gateway import KubernetesGateway, SecretData

ACCOUNT_KEY = "account.json"
ACCOUNT_URL_ANNOTATION = "certfleet.io/acme-account-url"


class IssuerNotConfiguredError(CertfleetError):
    """The spec's ACME settings name something that is not there (an EAB Secret)."""


class KubernetesSecrets:
    def __init__(self, gateway: KubernetesGateway) -> None:
        self._gateway = gateway

    def read_tls(self, namespace: str, name: str) -> tuple[bytes, bytes] | None:
        secret = self._gateway.read_secret(namespace, name)
        if secret is None:
            return None
        return secret.value(TLS_CERT_KEY) or b"", secret.value(TLS_PRIVATE_KEY) or b""

    def write_tls(
        self,
        namespace: str,
        name: str,
        fullchain: bytes,
        key: bytes,
        labels: Mapping[str, str],
        annotations: Mapping[str, str],
    ) -> None:
        self._gateway.write_secret(
            namespace,
            name,
            TLS_SECRET_TYPE,
            {TLS_CERT_KEY: fullchain, TLS_PRIVATE_KEY: key},
            labels,
            annotations,
        )


class SecretAccountStore:
    """One ACME account per (CA directory, email), its key in a Secret of the operator's
    namespace, so every replica and every restart reuses the same account."""

    def __init__(self, gateway: KubernetesGateway, namespace: str) -> None:
        self._gateway = gateway
        self._namespace = namespace

    @staticmethod
    def secret_name(directory_url: str, email: str | None) -> str:
        digest = hashlib.sha256(f"{directory_url}\n{email or ''}".encode()).hexdigest()[:16]
        return f"certfleet-acme-account-{digest}"

    def load(self, directory_url: str, email: str | None) -> StoredAccount | None:
        secret = self._gateway.read_secret(self._namespace, self.secret_name(directory_url, email))
        if secret is None or not secret.value(ACCOUNT_KEY):
            return None
        url = secret.annotations.get(ACCOUNT_URL_ANNOTATION, "")
        return StoredAccount(key_json=(secret.value(ACCOUNT_KEY) or b"").decode(), account_url=url)

    def save(self, directory_url: str, email: str | None, account: StoredAccount) -> None:
        self._gateway.write_secret(
            self._namespace,
            self.secret_name(directory_url, email),
            "Opaque",
            {ACCOUNT_KEY: account.key_json.encode()},
            labels={"certfleet.io/acme-account": "true"},
            annotations={
                ACCOUNT_URL_ANNOTATION: account.account_url,
                "certfleet.io/acme-directory": directory_url,
            },
        )


@dataclass(frozen=True)
class _AcmeIssuerPort:
    issuer: AcmeIssuer
    deadline_seconds: float

    def issue(
        self, names: Sequence[str], key_algorithm: str, replacing: bytes | None = None
    ) -> IssuedCertificate:
        issued = self.issuer.issue(
            names, KeyAlgorithm(key_algorithm), self.deadline_seconds, replacing=replacing
        )
        return IssuedCertificate(issued.fullchain_pem, issued.private_key_pem)


class ClusterWorld:
    def __init__(
        self,
        gateway: KubernetesGateway,
        operator_namespace: str,
        challenges: ChallengeStore,
        acme_ca_bundle: str | None = None,
        issuance_deadline_seconds: float = 120.0,
        on_acme_request: RequestHook | None = None,
        on_s3_client: Callable[[Any], None] | None = None,
        ari_min_ask_again_seconds: float = ari.DEFAULT_MIN_ASK_AGAIN_SECONDS,
        ari_max_ask_again_seconds: float = ari.DEFAULT_MAX_ASK_AGAIN_SECONDS,
    ) -> None:
        """The hooks are for metrics: every ACME request's duration, every new S3 client.
        A CA's renewal information is asked for again after its Retry-After, bounded by the
        `ari_*` seconds (the minimum also after a failure or from a CA without ARI)."""
        self._gateway = gateway
        self.secrets = KubernetesSecrets(gateway)
        self._accounts = SecretAccountStore(gateway, operator_namespace)
        self._challenges = challenges
        self._acme_ca_bundle = acme_ca_bundle
        self._deadline = issuance_deadline_seconds
        self._on_acme_request = on_acme_request
        self._on_s3_client = on_s3_client
        self._datastores: dict[tuple[Any, ...], S3Datastore] = {}
        self._lock = threading.Lock()
        self._ari_bounds = (ari_min_ask_again_seconds, ari_max_ask_again_seconds)
        # (directory, certificate digest) -> (monotonic time to ask again, window)
        self._windows: dict[tuple[str, str], tuple[float, tuple[datetime, datetime] | None]] = {}

    def cloudhost(self, name: str) -> Mapping[str, Any] | None:
        return self._gateway.get_cloudhost(name)

    def _secret(self, ref: ObjectRef, what: str) -> SecretData:
        secret = self._gateway.read_secret(ref.namespace, ref.name)
        if secret is None:
            raise DatastoreNotConfiguredError(
                f"the {what} Secret {ref.namespace}/{ref.name} does not exist"
            )
        return secret

    def datastore(self, cloudhost: CloudHostConfig) -> S3Datastore:
        credentials = self._secret(cloudhost.credentials, "credentials")
        access_key = credentials.value("accessKeyID")
        secret_key = credentials.value("secretAccessKey")
        if not access_key or not secret_key:
            raise DatastoreNotConfiguredError(
                f"Secret {cloudhost.credentials.namespace}/{cloudhost.credentials.name} needs "
                "the keys accessKeyID and secretAccessKey"
            )
        master = self._secret(cloudhost.encryption_key, "encryption key").value("key")
        if master is None or len(master) != MASTER_KEY_BYTES:
            raise DatastoreNotConfiguredError(
                f"Secret {cloudhost.encryption_key.namespace}/{cloudhost.encryption_key.name} "
                f"needs the key 'key' holding {MASTER_KEY_BYTES} random bytes"
            )
        # Clients are reused while the configuration and the credentials stay the same.
        identity = (cloudhost, hashlib.sha256(access_key + secret_key + master).hexdigest())
        with self._lock:
            if identity not in self._datastores:
                client = s3_client(
                    endpoint=cloudhost.endpoint,
                    region=cloudhost.region,
                    access_key_id=access_key.decode(),
                    secret_access_key=secret_key.decode(),
                    addressing_style=cloudhost.addressing_style,
                )
                if self._on_s3_client is not None:
                    self._on_s3_client(client)
                self._datastores[identity] = S3Datastore(client, [MasterKey(master)])
            return self._datastores[identity]

    def renewal_window(
        self, spec: CertificateSpec, certificate_pem: bytes
    ) -> tuple[datetime, datetime] | None:
        """The CA's suggested window (RFC 9773), remembered per certificate until the CA's
        Retry-After: reconciliations may come often, ARI requests do not."""
        if spec.acme is None:
            return None
        try:
            directory_url = resolve_directory_url(spec.acme.server)
        except InvalidAcmeServerError:
            return None  # advisory: the issuance reports the bad server
        key = (directory_url, hashlib.sha256(certificate_pem).hexdigest())
        now = time.monotonic()
        with self._lock:
            known = self._windows.get(key)
        if known is not None and known[0] > now:
            return known[1]
        # No account is needed for this plain GET: the issuer only lends its transport.
        issuer = AcmeIssuer(
            directory_url,
            self._accounts,
            self._challenges,
            ca_bundle=self._acme_ca_bundle,
            on_request=self._on_acme_request,
        )
        minimum, maximum = self._ari_bounds
        info = issuer.renewal_info(
            certificate_pem, min_ask_again_seconds=minimum, max_ask_again_seconds=maximum
        )
        window = info.window if info is not None else None
        ask_again = info.ask_again_seconds if info is not None else minimum
        with self._lock:
            # Forget what is stale, so replaced certificates do not pile up.
            for stale in [k for k, (until, _) in self._windows.items() if until <= now]:
                del self._windows[stale]
            self._windows[key] = (now + ask_again, window)
        return window

    def issuer(self, spec: CertificateSpec, namespace: str) -> _AcmeIssuerPort:
        assert spec.acme is not None
        binding = None
        if spec.acme.eab_key_id and spec.acme.eab_hmac_secret:
            secret_name, key = spec.acme.eab_hmac_secret
            secret = self._gateway.read_secret(namespace, secret_name)
            hmac_key = secret.value(key) if secret else None
            if not hmac_key:
                raise IssuerNotConfiguredError(
                    f"the external account binding Secret {namespace}/{secret_name} has no {key!r}"
                )
            binding = (spec.acme.eab_key_id, hmac_key.decode().strip())
        issuer = AcmeIssuer(
            resolve_directory_url(spec.acme.server),
            self._accounts,
            self._challenges,
            email=spec.acme.email,
            ca_bundle=self._acme_ca_bundle,
            external_account_binding=binding,
            on_request=self._on_acme_request,
        )
        return _AcmeIssuerPort(issuer, self._deadline)
