"""Real DNS servers on loopback: BIND 9 authoritative for test zones, with RFC 2136 updates
allowed for one TSIG key, so DNS-01 runs against the real protocol end to end.

`BindServer(workdir, zones, tsig)` serves each zone from its own file on `address:port` (a
free port unless given); `records` lines are added to a zone's file as written (relative
names, TTL 60). Recursion is off: the server is the authority, and pebble (`-dnsserver`) and
the operator (`--dns01-resolver`) both ask it directly.
"""

from __future__ import annotations

import base64
import json
import secrets
import sqlite3
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype

from testbed import binaries
from testbed.binaries import MissingProgramError
from testbed.processes import ServerProcess, Servers, free_port, http_ok


def txt_values(host: str, port: int, fqdn: str) -> set[str]:
    """The TXT values a server itself answers at `fqdn` now."""
    query = dns.message.make_query(fqdn, dns.rdatatype.TXT)
    answer = dns.query.udp(query, host, port=port, timeout=2)
    return {
        b"".join(rdata.strings).decode()
        for rrset in answer.answer
        if rrset.rdtype == dns.rdatatype.TXT
        for rdata in rrset
    }


@dataclass(frozen=True)
class TsigKey:
    name: str = "certfleet-test"
    algorithm: str = "hmac-sha256"
    secret: str = field(
        default_factory=lambda: base64.b64encode(secrets.token_bytes(32)).decode(), repr=False
    )


class BindServer(Servers):
    def __init__(
        self,
        workdir: Path,
        zones: dict[str, list[str]],
        tsig: TsigKey | None = None,
        address: str = "127.0.0.1",
        port: int | None = None,
        updates: bool = True,
        notify: tuple[str, int] | None = None,
        secondary_of: tuple[str, int] | None = None,
    ) -> None:
        """`notify`: a secondary to tell of every change (it transfers the zone then);
        `secondary_of`: serve the zones as a secondary of that primary instead."""
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.zones = zones
        self.tsig = tsig or TsigKey()
        self.address = address
        self.port = port or free_port(address)
        self.updates = updates
        self.notify = notify
        self.secondary_of = secondary_of
        self.process: ServerProcess | None = None
        self.startup_seconds = 0.0

    def start(self) -> None:
        zone_blocks = []
        for zone, records in self.zones.items():
            path = self.workdir / f"{zone}.db"
            if self.secondary_of is not None:
                host, port = self.secondary_of
                zone_blocks.append(
                    f'zone "{zone}" {{ type secondary; file "{path}"; '
                    f"primaries {{ {host} port {port}; }}; allow-notify {{ any; }}; }};"
                )
                continue
            path.write_text(
                "\n".join(
                    [
                        "$TTL 60",
                        f"@ SOA ns1.{zone}. hostmaster.{zone}. 1 60 60 600 60",
                        *records,
                        "",
                    ]
                )
            )
            policy = (
                f"update-policy {{ grant {self.tsig.name} zonesub TXT; }};" if self.updates else ""
            )
            if self.notify is not None:
                host, port = self.notify
                policy += f" notify explicit; also-notify {{ {host} port {port}; }};"
            zone_blocks.append(f'zone "{zone}" {{ type primary; file "{path}"; {policy} }};')
        if ":" in self.address:  # IPv6: a second server on the same port as a 127.0.0.1 one
            listen = f"listen-on {{ none; }}; listen-on-v6 port {self.port} {{ {self.address}; }};"
        else:
            listen = f"listen-on port {self.port} {{ {self.address}; }}; listen-on-v6 {{ none; }};"
        config = self.workdir / "named.conf"
        config.write_text(
            f"""
options {{
    directory "{self.workdir}";
    pid-file "{self.workdir}/named.pid";
    {listen}
    # Recursion only into its own zones (no root hints reach out): CNAMEs into another
    # of its zones are followed for clients that ask, as a resolver would.
    recursion yes;
    allow-recursion {{ any; }};
    dnssec-validation no;
    notify no;
    allow-query {{ any; }};
    allow-transfer {{ any; }};
}};
controls {{ }};
key "{self.tsig.name}" {{ algorithm {self.tsig.algorithm}; secret "{self.tsig.secret}"; }};
{chr(10).join(zone_blocks)}
"""
        )
        self.process = ServerProcess(
            "named",
            [str(binaries.system_program("named")), "-g", "-n", "1", "-c", str(config)],
            self.workdir / "named.log",
        )
        first_zone = next(iter(self.zones))
        self.startup_seconds = self.process.wait_until(lambda: self._answers(first_zone))

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def txt_values(self, fqdn: str) -> set[str]:
        """What the server itself holds at `fqdn` now."""
        return txt_values(self.address, self.port, fqdn)

    def _answers(self, zone: str) -> bool:
        try:
            query = dns.message.make_query(zone, dns.rdatatype.SOA)
            answer = dns.query.udp(query, self.address, port=self.port, timeout=1)
        except Exception:  # not answering yet: timeouts, refusals, malformed answers
            return False
        return bool(answer.answer)


SQLITE_SCHEMA = Path("/usr/share/doc/pdns-backend-sqlite3/schema.sqlite3.sql")


class PowerDnsServer(Servers):
    """PowerDNS authoritative with the sqlite3 backend and its HTTP API (the one lexicon's
    powerdns provider drives), serving `zone` with `records` ((name, type, content) tuples)."""

    def __init__(self, workdir: Path, zone: str, records: list[tuple[str, str, str]]) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.zone = zone
        self.records = records
        self.port = free_port()
        self.api_port = free_port()
        self.api_key = secrets.token_urlsafe(24)
        self.process: ServerProcess | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start(self) -> None:
        if not SQLITE_SCHEMA.is_file():
            raise MissingProgramError(
                f"{SQLITE_SCHEMA} is missing: run tests/testbed/install-system-packages.sh"
            )
        database = self.workdir / "pdns.sqlite3"
        with sqlite3.connect(database) as db:
            db.executescript(SQLITE_SCHEMA.read_text())
        (self.workdir / "pdns.conf").write_text(
            "\n".join(
                [
                    "launch=gsqlite3",
                    f"gsqlite3-database={database}",
                    "local-address=127.0.0.1",
                    f"local-port={self.port}",
                    "api=yes",
                    f"api-key={self.api_key}",
                    "webserver=yes",
                    "webserver-address=127.0.0.1",
                    f"webserver-port={self.api_port}",
                    "webserver-allow-from=127.0.0.0/8",
                    f"socket-dir={self.workdir}",
                    "daemon=no",
                    "guardian=no",
                    "disable-syslog=yes",
                    "",
                ]
            )
        )
        self.process = ServerProcess(
            "pdns_server",
            [str(binaries.system_program("pdns_server")), f"--config-dir={self.workdir}"],
            self.workdir / "pdns.log",
        )
        self.process.wait_until(
            lambda: http_ok(f"{self.api_url}/api/v1/servers", headers=self._headers())
        )
        zone = f"{self.zone}."
        self._api(
            "POST", "/zones", {"name": zone, "kind": "Native", "nameservers": [f"ns1.{zone}"]}
        )
        rrsets = [
            {
                "name": f"{name}.{zone}" if name != "@" else zone,
                "type": rtype,
                "ttl": 60,
                "changetype": "REPLACE",
                "records": [{"content": content, "disabled": False}],
            }
            for name, rtype, content in self.records
        ]
        self._api("PATCH", f"/zones/{zone}", {"rrsets": rrsets})

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def txt_values(self, fqdn: str) -> set[str]:
        return txt_values("127.0.0.1", self.port, fqdn)

    def _headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key}

    def _api(self, method: str, path: str, body: object) -> None:
        request = urllib.request.Request(
            f"{self.api_url}/api/v1/servers/localhost{path}",
            data=json.dumps(body).encode(),
            headers={**self._headers(), "Content-Type": "application/json"},
            method=method,
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert answer.status in (200, 201, 204), answer.status
