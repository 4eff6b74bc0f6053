"""A real ACME CA on loopback: Debian's pebble, with pebble-challtestsrv as its DNS server.

Every name resolves to 127.0.0.1, so pebble validates HTTP-01 against `http_port` on this machine:
put a webserver there that answers /.well-known/acme-challenge/.

`pebble="module"` runs the current pebble built from its Go module (versions.env) instead of
Debian's 2.4: it adds ACME Renewal Information (RFC 9773), `replaces` and profiles.
"""

from __future__ import annotations

import json
import re
import ssl
import urllib.request
from pathlib import Path
from typing import Literal

from testbed import binaries
from testbed.pki import TestCA
from testbed.processes import ServerProcess, Servers, free_port, http_ok, tcp_open

# pebble logs one line per new order; counting them proves reuse ("zero new ACME orders").
_ORDER_LINE = re.compile(rb"Added order \"")
_ORDER_ID = re.compile(rb"Added order \"([^\"]+)\"")
# ... and one per certificate it issues, naming the order: an order without one was wasted.
_ISSUED_LINE = re.compile(rb"Issued certificate serial ([0-9a-f]+) for order (\S+)")


class AcmeCA(Servers):
    def __init__(
        self,
        workdir: Path,
        http_port: int | None = None,
        certificate_validity_seconds: int | None = None,
        authz_reuse_percent: int = 0,
        pebble: Literal["debian", "module"] = "debian",
        dns_server: tuple[str, int] | None = None,
        external_account_mac_keys: dict[str, str] | None = None,
    ) -> None:
        """`dns_server`: where pebble resolves names and DNS-01 records (a BIND of
        testbed.dns); None: its own pebble-challtestsrv, which answers 127.0.0.1 for all.
        `external_account_mac_keys` (key id -> base64url HMAC key): pebble then registers
        accounts only with External Account Binding by one of them (ZeroSSL's way)."""
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.http_port = http_port or free_port()
        self.certificate_validity_seconds = certificate_validity_seconds
        self.authz_reuse_percent = authz_reuse_percent
        if pebble not in ("debian", "module"):
            raise ValueError(f"pebble must be 'debian' or 'module', got {pebble!r}")
        self.pebble_kind = pebble
        self.dns_server = dns_server
        self.external_account_mac_keys = dict(external_account_mac_keys or {})
        self.listener_ca = TestCA(workdir / "pki", "pebble-listener")
        self.pebble: ServerProcess | None = None
        self.challtestsrv: ServerProcess | None = None
        self.directory_url = ""
        self.management_url = ""
        self.dns_port = 0
        self.startup_seconds: dict[str, float] = {}
        self._ports: tuple[int, int, int] | None = None  # ACME, management, TLS-ALPN

    @property
    def listener_ca_bundle(self) -> Path:
        """The CA file that verifies pebble's own HTTPS listener (the ACME directory)."""
        return self.listener_ca.cert_path

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.listener_ca_bundle))

    def start(self) -> None:
        if self.dns_server is None:
            self._start_challtestsrv()
        dns_host, self.dns_port = self.dns_server or ("127.0.0.1", self.dns_port)
        self._start_pebble(dns_host)

    def _start_challtestsrv(self) -> None:
        self.dns_port = free_port()
        dns_management = free_port()
        self.challtestsrv = ServerProcess(
            "pebble-challtestsrv",
            [
                str(binaries.system_program("pebble-challtestsrv")),
                f"-management=127.0.0.1:{dns_management}",
                f"-dns01=127.0.0.1:{self.dns_port}",
                "-http01=",
                "-https01=",
                "-tlsalpn01=",
                "-defaultIPv4=127.0.0.1",
                "-defaultIPv6=",
            ],
            self.workdir / "challtestsrv.log",
        )
        self.challtestsrv_url = f"http://127.0.0.1:{dns_management}"
        self.startup_seconds["pebble-challtestsrv"] = self.challtestsrv.wait_until(
            lambda: tcp_open("127.0.0.1", dns_management)
        )

    def stop_pebble(self) -> None:
        """pebble alone goes away (an outage of the CA); it keeps nothing on disk, so its
        orders, accounts and roots are gone with it."""
        assert self.pebble is not None
        self.pebble.stop()

    def restart_pebble(self) -> None:
        """pebble again on the same ports (the directory URL stays), with new roots."""
        dns_host, _ = self.dns_server or ("127.0.0.1", self.dns_port)
        self._start_pebble(dns_host)

    def _start_pebble(self, dns_host: str) -> None:
        # The same ports at a restart: the directory URL in every spec stays right.
        self._ports = self._ports or (free_port(), free_port(), free_port())
        acme_port, management_port, tls_port = self._ports
        pebble_module = self.pebble_kind == "module"
        program = (
            binaries.go_program(f"pebble-{binaries.pinned_version('PEBBLE_VERSION')}")
            if pebble_module
            else binaries.system_program("pebble")
        )
        listener = self.listener_ca.serving_pair("pebble", ("localhost", "pebble"))
        settings: dict[str, object] = {
            "listenAddress": f"127.0.0.1:{acme_port}",
            "managementListenAddress": f"127.0.0.1:{management_port}",
            "certificate": str(listener.cert),
            "privateKey": str(listener.key),
            "httpPort": self.http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": bool(self.external_account_mac_keys),
        }
        if self.external_account_mac_keys:
            settings["externalAccountMACKeys"] = self.external_account_mac_keys
        if self.certificate_validity_seconds is not None:
            if pebble_module:
                # Newer pebble ignores the top-level key: validity is per profile.
                settings["profiles"] = {
                    "default": {
                        "description": "the test bed's profile",
                        "validityPeriod": self.certificate_validity_seconds,
                    }
                }
            else:
                settings["certificateValidityPeriod"] = self.certificate_validity_seconds
        config = self.workdir / "pebble-config.json"
        config.write_text(json.dumps({"pebble": settings}, indent=2))
        self.pebble = ServerProcess(
            "pebble",
            [
                str(program),
                f"-config={config}",
                f"-dnsserver={dns_host}:{self.dns_port}",
            ],
            self.workdir / "pebble.log",
            env={
                "PEBBLE_VA_NOSLEEP": "1",
                "PEBBLE_WFE_NONCEREJECT": "0",
                "PEBBLE_AUTHZREUSE": str(self.authz_reuse_percent),
            },
        )
        self.directory_url = f"https://127.0.0.1:{acme_port}/dir"
        self.management_url = f"https://127.0.0.1:{management_port}"
        context = self.ssl_context()
        name = "pebble-module" if pebble_module else "pebble"
        self.startup_seconds[name] = self.pebble.wait_until(
            lambda: http_ok(self.directory_url, context=context, expect=b"newOrder")
        )

    def stop(self) -> None:
        for process in (self.pebble, self.challtestsrv):
            if process is not None:
                process.stop()

    def issuing_roots_pem(self) -> bytes:
        """The root that signs the certificates pebble issues (new at every pebble start)."""
        with urllib.request.urlopen(
            f"{self.management_url}/roots/0", context=self.ssl_context(), timeout=5
        ) as response:
            return bytes(response.read())

    def set_renewal_info(self, certificate_pem: bytes, response: str) -> None:
        """Module pebble only: what its renewalInfo answers for this certificate from now on
        (any text, even malformed JSON, to test a client's handling)."""
        request = urllib.request.Request(
            f"{self.management_url}/set-renewal-info/",
            data=json.dumps(
                {"Certificate": certificate_pem.decode(), "ARIResponse": response}
            ).encode(),
            method="POST",
        )
        with urllib.request.urlopen(request, context=self.ssl_context(), timeout=5) as answer:
            assert answer.status == 200

    def orders_created(self) -> int:
        assert self.pebble is not None
        return len(_ORDER_LINE.findall(self.pebble.log_path.read_bytes()))

    def order_ids(self) -> list[str]:
        """Every order pebble added, in order (its URL ends with the id)."""
        assert self.pebble is not None
        return [m.decode() for m in _ORDER_ID.findall(self.pebble.log_path.read_bytes())]

    def issued(self) -> dict[str, int]:
        """order id -> the serial of the certificate pebble issued for it."""
        assert self.pebble is not None
        found = _ISSUED_LINE.findall(self.pebble.log_path.read_bytes())
        return {order.decode(): int(serial, 16) for serial, order in found}
