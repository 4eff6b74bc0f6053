"""kubernetes.io/tls Secrets (certfleet's cache, or one a person supplied) as PEM pairs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from certfleet.api.names import (
    TLS_CERT_KEY,
    TLS_PRIVATE_KEY,
    TLS_SECRET_TYPE,
)
from certfleet.kube.gateway import KubernetesGateway, OwnerReference


class TlsSecrets:
    def __init__(self, gateway: KubernetesGateway) -> None:
        self._gateway = gateway

    def read(self, namespace: str, name: str) -> tuple[bytes, bytes] | None:
        """(tls.crt, tls.key); empty bytes for a missing key; None if there is no Secret."""
        secret = self._gateway.read_secret(namespace, name)
        if secret is None:
            return None
        return secret.value(TLS_CERT_KEY) or b"", secret.value(TLS_PRIVATE_KEY) or b""

    def read_all(self, namespace: str, name: str) -> Mapping[str, bytes] | None:
        """Every key of the Secret (certfleet keeps more than the pair in its cache)."""
        secret = self._gateway.read_secret(namespace, name)
        return secret.data if secret is not None else None

    def write(
        self,
        namespace: str,
        name: str,
        fullchain: bytes,
        key: bytes,
        labels: Mapping[str, str],
        annotations: Mapping[str, str],
        owners: Sequence[OwnerReference] = (),
        extra: Mapping[str, bytes] | None = None,
    ) -> None:
        """`extra`: more keys beside the pair (merged into an existing Secret's)."""
        self._gateway.write_secret(
            namespace,
            name,
            TLS_SECRET_TYPE,
            {TLS_CERT_KEY: fullchain, TLS_PRIVATE_KEY: key, **(extra or {})},
            labels,
            annotations,
            owners,
        )
