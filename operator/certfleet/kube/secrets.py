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
        fullchain: bytes | None,
        key: bytes | None,
        labels: Mapping[str, str],
        annotations: Mapping[str, str],
        owners: Sequence[OwnerReference] = (),
        extra: Mapping[str, bytes] | None = None,
        exists: bool = False,
    ) -> None:
        """`extra`: more keys beside the pair (merged into an existing Secret's). A pair of
        None keeps the one the Secret has (a new one gets empty values: kubernetes.io/tls
        needs both keys), with no read first. `exists`: it was seen (one request, not two)."""
        pair = {TLS_CERT_KEY: fullchain or b"", TLS_PRIVATE_KEY: key or b""}
        keep_pair = fullchain is None and key is None
        self._gateway.write_secret(
            namespace,
            name,
            TLS_SECRET_TYPE,
            {**pair, **(extra or {})},
            labels,
            annotations,
            owners,
            update=dict(extra or {}) if keep_pair else None,
            exists=exists,
        )
