"""What the gateway makes of a Secret read from the API server (untrusted input)."""

from __future__ import annotations

import base64

from kubernetes import client

from certfleet.core.pem import MAX_PEM_BYTES
from certfleet.kube.gateway import _decode_secret


def secret(**values: bytes | str) -> client.V1Secret:
    data = {
        key: value if isinstance(value, str) else base64.b64encode(value).decode()
        for key, value in values.items()
    }
    return client.V1Secret(type="kubernetes.io/tls", data=data, metadata=client.V1ObjectMeta())


def test_a_large_value_is_kept_for_the_pem_parser_to_judge() -> None:
    # 300 KiB: more than the old 256 KiB cut-off, which reported it as Missing.
    large = b"x" * (300 * 1024)
    decoded = _decode_secret(secret(**{"tls.crt": large}))
    assert decoded.value("tls.crt") == large


def test_values_beyond_what_kubernetes_stores_and_malformed_ones_are_absent() -> None:
    beyond = b"x" * (MAX_PEM_BYTES + 3)
    values: dict[str, bytes | str] = {"tls.crt": beyond, "tls.key": "not base64!"}
    decoded = _decode_secret(secret(**values))
    assert decoded.value("tls.crt") is None
    assert decoded.value("tls.key") is None


def test_values_never_show_in_a_repr() -> None:
    decoded = _decode_secret(secret(**{"tls.key": b"-----BEGIN PRIVATE KEY-----"}))
    assert "PRIVATE" not in repr(decoded)
