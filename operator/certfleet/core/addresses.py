"""``HOST:PORT`` as given on a command line or in an environment variable, and whether a URL
would travel in clear over a network (pure)."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

_HOST = re.compile(r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+")


def parse_host_port(value: str) -> tuple[str, int]:
    """``127.0.0.1:8089``, ``0.0.0.0:9090``, ``[::1]:443`` or ``node-1:80`` into (host, port).

    Raises ValueError naming the input for anything else: an empty host, a port that is not
    a number from 0 to 65535 (0 lets the system choose), a host with spaces or a path.
    """
    host, separator, port = value.rpartition(":")
    if not separator or not _HOST.fullmatch(host) or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    number = int(port)
    if number > 65535:
        raise ValueError(f"the port of {value!r} is above 65535")
    return host.removeprefix("[").removesuffix("]"), number


def is_plain_http_to_remote(url: str) -> bool:
    """True for an ``http://`` URL whose host is not this machine (``localhost``, 127.0.0.0/8,
    ``::1``): what it carries (signed S3 requests, pointers, encrypted keys) could be read
    and changed on the way. A URL that does not parse counts as remote."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
    except ValueError:
        return True
    if parts.scheme.lower() != "http":
        return False
    if host is None:
        return True
    if host.rstrip(".").lower() == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True
