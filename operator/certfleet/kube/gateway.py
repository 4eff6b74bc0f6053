"""The Kubernetes adapter: Secrets, CloudHosts and ManagedCertificate status, through the
official client. Everything read here is untrusted input and is bounded and type-checked."""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from certfleet.api.names import (
    CLOUDHOSTS,
    GROUP,
    MANAGED_BY_LABEL,
    MANAGED_CERTIFICATES,
    RENEW_NOW_ANNOTATION,
    VERSION,
)
from certfleet.api.reasons import CertificateReason
from certfleet.core.errors import CertfleetError
from certfleet.core.pem import MAX_PEM_BYTES

log = logging.getLogger(__name__)

# Kubernetes stores at most 1 MiB per Secret: the same bound as the PEM parser's, so a value
# too large for certfleet reaches the parser and is refused as InvalidPEM (too large), never
# silently dropped and mistaken for a missing one.
MAX_SECRET_VALUE_BYTES = MAX_PEM_BYTES
# (connect, read) seconds for every request: a half-open connection must not hold a
# reconciliation, and the resource's lock, forever.
REQUEST_TIMEOUT = (5.0, 30.0)


class KubernetesUnavailableError(CertfleetError):
    """The API server did not answer as expected; worth retrying."""

    retryable = True
    reason = CertificateReason.KubernetesUnavailable


@dataclass(frozen=True)
class SecretData:
    type: str
    data: Mapping[str, bytes] = field(repr=False)  # never print values: they hold keys
    annotations: Mapping[str, str] = field(default_factory=dict)

    def value(self, key: str) -> bytes | None:
        return self.data.get(key)


def _decode_secret(secret: Any) -> SecretData:
    values: dict[str, bytes] = {}
    for key, encoded in (secret.data or {}).items():
        if not isinstance(encoded, str) or len(encoded) > MAX_SECRET_VALUE_BYTES * 4 // 3 + 4:
            continue  # oversize or malformed values are treated as absent, never loaded
        try:
            values[key] = base64.b64decode(encoded, validate=True)
        except ValueError:
            continue
    return SecretData(
        type=str(secret.type or ""),
        data=values,
        annotations=dict(secret.metadata.annotations or {}),
    )


@dataclass(frozen=True)
class OwnerReference:
    """An object in the same namespace whose deletion lets the garbage collector delete the
    one it owns (blockOwnerDeletion stays off: it needs rights on the owner's finalizers)."""

    api_version: str
    kind: str
    name: str
    uid: str


# A namespace's ManagedCertificates are listed in pages of this size, at most this many.
MAX_LISTED_CERTIFICATES = 500


class KubernetesGateway:
    def __init__(self, api_client: client.ApiClient | None = None) -> None:
        self._core = client.CoreV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)

    def read_secret(self, namespace: str, name: str) -> SecretData | None:
        try:
            return _decode_secret(
                self._core.read_namespaced_secret(name, namespace, _request_timeout=REQUEST_TIMEOUT)
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise KubernetesUnavailableError(
                f"reading Secret {namespace}/{name}: {error.status} {error.reason}"
            ) from None

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
        """Creates the Secret, or patches an existing one (idempotent): with `update` instead
        of `data` when given (the keys it does not name keep their values). `owners` are added
        to its ownerReferences (a strategic merge keyed by uid keeps the others). `exists`: it
        was seen, so the patch comes first (a create would be answered 409), a create after
        a 404."""
        created = self._secret_body(namespace, name, secret_type, data, labels, annotations, owners)
        patched = (
            created
            if update is None
            else self._secret_body(
                namespace, name, secret_type, update, labels, annotations, owners
            )
        )
        if exists and self._patch_secret(namespace, name, patched):
            return
        if self._create_secret(namespace, created):
            return
        if not self._patch_secret(namespace, name, patched):  # deleted since the 409
            raise KubernetesUnavailableError(f"updating Secret {namespace}/{name}: 404 Not Found")

    @staticmethod
    def _secret_body(
        namespace: str,
        name: str,
        secret_type: str,
        data: Mapping[str, bytes],
        labels: Mapping[str, str],
        annotations: Mapping[str, str],
        owners: Sequence[OwnerReference],
    ) -> client.V1Secret:
        return client.V1Secret(
            metadata=client.V1ObjectMeta(
                name=name,
                namespace=namespace,
                labels={**MANAGED_BY_LABEL, **labels},
                annotations=dict(annotations),
                owner_references=[
                    client.V1OwnerReference(
                        api_version=owner.api_version,
                        kind=owner.kind,
                        name=owner.name,
                        uid=owner.uid,
                    )
                    for owner in owners
                ]
                or None,
            ),
            type=secret_type,
            data={key: base64.b64encode(value).decode() for key, value in data.items()},
        )

    def _create_secret(self, namespace: str, body: client.V1Secret) -> bool:
        """False when it exists already (409)."""
        try:
            self._core.create_namespaced_secret(namespace, body, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as error:
            if error.status == 409:
                return False
            raise KubernetesUnavailableError(
                f"creating Secret {namespace}/{body.metadata.name}: {error.status} {error.reason}"
            ) from None
        return True

    def _patch_secret(self, namespace: str, name: str, body: client.V1Secret) -> bool:
        """False when there is no such Secret (404)."""
        try:
            self._core.patch_namespaced_secret(
                name,
                namespace,
                body,
                _request_timeout=REQUEST_TIMEOUT,
                # Said, not left to the client's guess: ownerReferences merge by uid.
                _content_type="application/strategic-merge-patch+json",
            )
        except ApiException as error:
            if error.status == 404:
                return False
            raise KubernetesUnavailableError(
                f"updating Secret {namespace}/{name}: {error.status} {error.reason}"
            ) from None
        return True

    def list_certificates(self, namespace: str) -> list[Mapping[str, Any]]:
        """The ManagedCertificates of a namespace (at most MAX_LISTED_CERTIFICATES)."""
        try:
            found = self._custom.list_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                MANAGED_CERTIFICATES,
                limit=MAX_LISTED_CERTIFICATES,
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as error:
            raise KubernetesUnavailableError(
                f"listing ManagedCertificates in {namespace}: {error.status} {error.reason}"
            ) from None
        items = found.get("items") if isinstance(found, dict) else None
        return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []

    def read_certificate(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """A ManagedCertificate as the API server has it now; None when it is gone."""
        try:
            found: Mapping[str, Any] = self._custom.get_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                MANAGED_CERTIFICATES,
                name,
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise KubernetesUnavailableError(
                f"reading ManagedCertificate {namespace}/{name}: {error.status} {error.reason}"
            ) from None
        return found

    def get_cloudhost(self, name: str) -> Mapping[str, Any] | None:
        try:
            found: Mapping[str, Any] = self._custom.get_cluster_custom_object(
                GROUP, VERSION, CLOUDHOSTS, name, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise KubernetesUnavailableError(
                f"reading CloudHost {name}: {error.status} {error.reason}"
            ) from None
        return found

    def cluster_id(self) -> str | None:
        """The uid of the kube-system namespace: the same for every replica and restart of
        the operator in this cluster, different in another cluster. None if it cannot be read."""
        try:
            uid = self._core.read_namespace(
                "kube-system", _request_timeout=REQUEST_TIMEOUT
            ).metadata.uid
        except ApiException as error:
            log.warning("reading namespace kube-system: %s %s", error.status, error.reason)
            return None
        return uid if isinstance(uid, str) and 0 < len(uid) <= 64 else None

    def namespace_labels(self, namespace: str) -> Mapping[str, str] | None:
        """A namespace's labels (None when it does not exist): they admit it to CloudHosts."""
        try:
            found = self._core.read_namespace(namespace, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as error:
            if error.status == 404:
                return None
            raise KubernetesUnavailableError(
                f"reading namespace {namespace}: {error.status} {error.reason}"
            ) from None
        labels = found.metadata.labels or {}
        return {str(key): str(value) for key, value in labels.items()}

    def live_certificate_uid(self, namespace: str, name: str) -> str | None:
        """The uid of ManagedCertificate namespace/name; None when there is none or it is
        being deleted (a location's owner that is gone)."""
        found = self.read_certificate(namespace, name)
        if found is None:
            return None
        metadata = found.get("metadata")
        if not isinstance(metadata, Mapping) or metadata.get("deletionTimestamp"):
            return None
        uid = metadata.get("uid")
        return uid if isinstance(uid, str) else None

    def request_renewal(self, namespace: str, name: str, now: datetime) -> None:
        """Sets the renew-now annotation; the operator renews and removes it."""
        patch = {"metadata": {"annotations": {RENEW_NOW_ANNOTATION: now.isoformat()}}}
        try:
            self._custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                MANAGED_CERTIFICATES,
                name,
                patch,
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as error:
            raise KubernetesUnavailableError(
                f"annotating {namespace}/{name}: {error.status} {error.reason}"
            ) from None

    def patch_certificate_status(
        self, namespace: str, name: str, status: Mapping[str, Any]
    ) -> None:
        try:
            self._custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                MANAGED_CERTIFICATES,
                name,
                {"status": dict(status)},
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as error:
            if error.status == 404:
                return  # deleted meanwhile: nothing to report on
            raise KubernetesUnavailableError(
                f"patching status of {namespace}/{name}: {error.status} {error.reason}"
            ) from None
