"""The ACME order under way, as the caches keep it: a JSON document (where the order is, the
account, the names; nothing secret) beside the new private key, each its own Secret key or
file. Read back with bounds and checks: a Secret or a file anyone may have edited is an input
like any other, and a pending order that does not read is no order (a new one is placed)."""

from __future__ import annotations

import json

from certfleet.controller.ports import PendingOrder

ORDER_KEY = "pending-order.json"  # the Secret key or file name of the document
PRIVATE_KEY_KEY = "pending-order.key"  # ... and of the order's private key (0600 in files)

MAX_DOCUMENT_BYTES = 16 * 1024
MAX_KEY_BYTES = 16 * 1024
MAX_NAMES = 100
MAX_URL_CHARS = 2048


def order_document(order: PendingOrder) -> bytes:
    return json.dumps(
        {
            "directoryUrl": order.directory_url,
            "accountUrl": order.account_url,
            "orderUrl": order.order_url,
            "names": list(order.names),
        },
        sort_keys=True,
    ).encode()


def read_pending_order(document: bytes | None, key: bytes | None) -> PendingOrder | None:
    """The order the two parts describe; None when either is missing, empty (no order under
    way) or not what certfleet wrote."""
    if not document or not key or len(document) > MAX_DOCUMENT_BYTES or len(key) > MAX_KEY_BYTES:
        return None
    if b"-----BEGIN" not in key or b"PRIVATE KEY-----" not in key:
        return None
    try:
        fields = json.loads(document)
    except ValueError:
        return None
    if not isinstance(fields, dict):
        return None
    urls = [fields.get(name) for name in ("directoryUrl", "accountUrl", "orderUrl")]
    names = fields.get("names")
    if not all(_url(url) for url in urls) or not isinstance(names, list):
        return None
    if not 0 < len(names) <= MAX_NAMES or not all(_name(name) for name in names):
        return None
    directory, account, order = (str(url) for url in urls)
    return PendingOrder(directory, account, order, tuple(names), key)


def _url(value: object) -> bool:
    return (
        isinstance(value, str)
        and len(value) <= MAX_URL_CHARS
        and value.startswith(("https://", "http://"))
    )


def _name(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 253
