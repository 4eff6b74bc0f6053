"""What the gateway makes of a Secret read from the API server (untrusted input)."""

from __future__ import annotations

import base64
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from certfleet.core.pem import MAX_PEM_BYTES
from certfleet.kube.gateway import KubernetesGateway, _decode_secret


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


class FakeCore:
    """CoreV1Api's Secret calls over a dict, answering 409 and 404 as the API server does;
    `calls` lists every request."""

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict[str, str]] = {}
        self.calls: list[str] = []

    def read_namespaced_secret(self, name: str, namespace: str, **_: Any) -> client.V1Secret:
        self.calls.append("get")
        if (namespace, name) not in self.secrets:
            raise ApiException(status=404, reason="Not Found")
        return client.V1Secret(
            type="kubernetes.io/tls",
            data=dict(self.secrets[(namespace, name)]),
            metadata=client.V1ObjectMeta(),
        )

    def create_namespaced_secret(self, namespace: str, body: client.V1Secret, **_: Any) -> None:
        self.calls.append("create")
        if (namespace, body.metadata.name) in self.secrets:
            raise ApiException(status=409, reason="Conflict")
        self.secrets[(namespace, body.metadata.name)] = dict(body.data)

    def patch_namespaced_secret(
        self, name: str, namespace: str, body: client.V1Secret, **_: Any
    ) -> None:
        self.calls.append("patch")
        if (namespace, name) not in self.secrets:
            raise ApiException(status=404, reason="Not Found")
        self.secrets[(namespace, name)].update(body.data)  # a strategic merge of data


def gateway_over(core: FakeCore) -> KubernetesGateway:
    gateway = KubernetesGateway(client.ApiClient(client.Configuration()))
    gateway._core = cast(client.CoreV1Api, core)
    return gateway


def _write(gateway: KubernetesGateway, data: dict[str, bytes], **options: Any) -> None:
    gateway.write_secret("ns", "s", "Opaque", data, {}, {}, **options)


def test_a_secret_seen_is_patched_in_one_request_and_created_after_a_404() -> None:
    core = FakeCore()
    gateway = gateway_over(core)
    _write(gateway, {"a": b"1"}, exists=True)  # deleted since it was seen
    assert core.calls == ["patch", "create"]
    core.calls.clear()
    _write(gateway, {"a": b"2"}, exists=True)
    assert core.calls == ["patch"]
    _write(gateway, {"a": b"3"})  # not known to exist: a create first, as before
    assert core.calls == ["patch", "create", "patch"]
    assert core.secrets[("ns", "s")] == {"a": base64.b64encode(b"3").decode()}


def test_an_update_patches_only_its_keys_and_a_create_has_them_all() -> None:
    core = FakeCore()
    gateway = gateway_over(core)
    _write(gateway, {"tls.crt": b"", "order": b"1"}, update={"order": b"1"})
    assert core.secrets[("ns", "s")].keys() == {"tls.crt", "order"}
    _write(gateway, {"tls.crt": b"cert", "order": b""})
    _write(gateway, {"tls.crt": b"", "order": b"2"}, update={"order": b"2"})
    encoded = {"tls.crt": b"cert", "order": b"2"}
    assert core.secrets[("ns", "s")] == {
        k: base64.b64encode(v).decode() for k, v in encoded.items()
    }
