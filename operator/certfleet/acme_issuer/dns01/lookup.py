"""DNS questions of DNS-01, asked with dnspython (lego's `challenge/dns01` habits):

- where the TXT record goes: `_acme-challenge.<name>` after its CNAMEs (delegation), in the
  zone found by walking up to the closest SOA, through the resolver the operator is given;
- whether it is visible: asked of every authoritative server of that zone directly (its NS,
  their addresses), never of a cache that may still hold the old answer.

Every query has a timeout; names and answers are bounded (at most 8 CNAMEs, 16 servers).
"""

from __future__ import annotations

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
from dns.rdtypes.ANY.TXT import TXT

from certfleet.acme_issuer.errors import Dns01Error

MAX_CNAMES = 8
MAX_SERVERS = 16
DEFAULT_QUERY_TIMEOUT_SECONDS = 5.0

Server = tuple[str, int]  # an address and a port


def system_resolver() -> Server:
    """The first nameserver of /etc/resolv.conf (what the operator uses when not told)."""
    try:
        nameservers = dns.resolver.Resolver().nameservers
    except dns.exception.DNSException as error:
        raise Dns01Error(f"no DNS resolver configured: {error}") from None
    if not nameservers:
        raise Dns01Error("no DNS resolver configured: give the operator --dns01-resolver")
    return str(nameservers[0]), 53


class DnsLookup:
    """Asks `resolver` (recursive, or an authoritative server on a test bed) for the chain
    and the zone, and the zone's own servers, on `nameserver_port`, for the record."""

    def __init__(
        self,
        resolver: Server,
        nameserver_port: int = 53,
        timeout: float = DEFAULT_QUERY_TIMEOUT_SECONDS,
    ) -> None:
        self.resolver = resolver
        self.nameserver_port = nameserver_port
        self.timeout = timeout

    def challenge_target(self, domain: str) -> str:
        """Where `_acme-challenge.<domain>`'s TXT must go: the name itself or, when it is a
        CNAME, the end of its chain (the delegated zone)."""
        name = dns.name.from_text(f"_acme-challenge.{domain}")
        seen = {name}
        for _ in range(MAX_CNAMES):
            answer = self._ask(self.resolver, name, dns.rdatatype.CNAME, recursive=True)
            target = _cname(answer, name)
            if target is None:
                return name.to_text(omit_final_dot=True)
            if target in seen:
                raise Dns01Error(f"_acme-challenge.{domain}: its CNAMEs form a loop")
            seen.add(target)
            name = target
        raise Dns01Error(f"_acme-challenge.{domain}: more than {MAX_CNAMES} CNAMEs")

    def zone_of(self, fqdn: str) -> str:
        """The zone `fqdn` lives in: the closest enclosing name with an SOA."""
        candidate = dns.name.from_text(fqdn)
        while candidate != dns.name.root:
            answer = self._ask(self.resolver, candidate, dns.rdatatype.SOA, recursive=True)
            if answer.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
                for rrset in answer.answer:
                    if rrset.rdtype == dns.rdatatype.SOA and rrset.name == candidate:
                        return candidate.to_text(omit_final_dot=True)
                for rrset in answer.authority:
                    if rrset.rdtype == dns.rdatatype.SOA and candidate.is_subdomain(rrset.name):
                        return rrset.name.to_text(omit_final_dot=True)
            candidate = candidate.parent()
        raise Dns01Error(f"found no DNS zone (SOA) for {fqdn} through {_shown(self.resolver)}")

    def authoritative_servers(self, zone: str) -> list[Server]:
        """The addresses of the zone's NS, each on `nameserver_port`."""
        zone_name = dns.name.from_text(zone)
        answer = self._ask(self.resolver, zone_name, dns.rdatatype.NS, recursive=True)
        hosts = sorted(
            {
                rdata.target
                for rrset in answer.answer
                if rrset.rdtype == dns.rdatatype.NS and rrset.name == zone_name
                for rdata in rrset
            }
        )
        servers: list[Server] = []
        for host in hosts[:MAX_SERVERS]:
            for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                found = self._ask(self.resolver, host, rdtype, recursive=True)
                for rrset in found.answer:
                    if rrset.rdtype == rdtype:
                        servers.extend((rdata.address, self.nameserver_port) for rdata in rrset)
        if not servers:
            raise Dns01Error(f"zone {zone}: found no address of its nameservers")
        return sorted(set(servers))[:MAX_SERVERS]

    def txt_values(self, server: Server, fqdn: str) -> set[str]:
        """The TXT values at `fqdn` as `server` itself answers them (no recursion)."""
        name = dns.name.from_text(fqdn)
        answer = self._ask(server, name, dns.rdatatype.TXT, recursive=False)
        return {
            b"".join(rdata.strings).decode("ascii", "replace")
            for rrset in answer.answer
            if rrset.rdtype == dns.rdatatype.TXT and rrset.name == name
            for rdata in rrset
            if isinstance(rdata, TXT)
        }

    def _ask(
        self, server: Server, name: dns.name.Name, rdtype: dns.rdatatype.RdataType, recursive: bool
    ) -> dns.message.Message:
        query = dns.message.make_query(name, rdtype)
        if not recursive:
            query.flags &= ~dns.flags.RD
        try:
            answer, _ = dns.query.udp_with_fallback(
                query, server[0], port=server[1], timeout=self.timeout
            )
        except (dns.exception.DNSException, OSError) as error:
            raise Dns01Error(
                f"DNS query {name} {dns.rdatatype.to_text(rdtype)} to {_shown(server)} failed: "
                f"{error or type(error).__name__}"
            ) from None
        return answer


def _cname(answer: dns.message.Message, name: dns.name.Name) -> dns.name.Name | None:
    for rrset in answer.answer:
        if rrset.rdtype == dns.rdatatype.CNAME and rrset.name == name:
            target: dns.name.Name = rrset[0].target
            return target
    return None


def _shown(server: Server) -> str:
    host, port = server
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
