"""TXT records through RFC 2136 dynamic updates signed with TSIG (RFC 8945), by dnspython:
BIND, Knot, PowerDNS and Windows DNS take them.

An update adds or deletes one (name, TXT, value) record only: RFC 2136 section 2.5.4 deletes
"an RR from an RRset" when the rdata is given, so other values at the name stay.
"""

from __future__ import annotations

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update
from dns.rdtypes.ANY.TXT import TXT

from certfleet.acme_issuer.dns01.lookup import Server
from certfleet.acme_issuer.dns01.records import CHALLENGE_TTL_SECONDS
from certfleet.acme_issuer.errors import Dns01Error

TSIG_ALGORITHMS = {
    "hmac-sha256": dns.tsig.HMAC_SHA256,
    "hmac-sha384": dns.tsig.HMAC_SHA384,
    "hmac-sha512": dns.tsig.HMAC_SHA512,
    "hmac-sha1": dns.tsig.HMAC_SHA1,
}
DEFAULT_TIMEOUT_SECONDS = 10.0


class Rfc2136Records:
    """Updates go to `server` (the zone's primary), signed with the TSIG key."""

    def __init__(
        self,
        server: Server,
        key_name: str,
        secret_b64: str,
        algorithm: str = "hmac-sha256",
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        if algorithm not in TSIG_ALGORITHMS:
            raise Dns01Error(
                f"TSIG algorithm {algorithm[:40]!r} is not one of {', '.join(TSIG_ALGORITHMS)}",
                retryable=False,
            )
        try:
            self._keyring = dns.tsigkeyring.from_text({key_name: secret_b64})
        except (ValueError, dns.exception.DNSException):
            # Never the secret itself in the message.
            raise Dns01Error("the TSIG secret is not valid base64", retryable=False) from None
        self._key_name = dns.name.from_text(key_name)
        self._algorithm = TSIG_ALGORITHMS[algorithm]
        self.server = server
        self.timeout = timeout

    def add_txt(self, zone: str, fqdn: str, value: str) -> None:
        update = self._update(zone)
        update.add(dns.name.from_text(fqdn), CHALLENGE_TTL_SECONDS, _txt(value))
        self._send(update, f"adding a TXT value at {fqdn}")

    def remove_txt(self, zone: str, fqdn: str, value: str) -> None:
        update = self._update(zone)
        update.delete(dns.name.from_text(fqdn), _txt(value))
        self._send(update, f"removing a TXT value at {fqdn}")

    def _update(self, zone: str) -> dns.update.UpdateMessage:
        return dns.update.UpdateMessage(
            zone, keyring=self._keyring, keyname=self._key_name, keyalgorithm=self._algorithm
        )

    def _send(self, update: dns.update.UpdateMessage, what: str) -> None:
        host, port = self.server
        try:
            answer = dns.query.tcp(update, host, port=port, timeout=self.timeout)
        except (dns.exception.DNSException, OSError) as error:
            # A TSIG the server refused shows up here too (BADKEY, BADSIG).
            raise Dns01Error(
                f"RFC 2136 update to {host}:{port} ({what}) failed: {error or type(error).__name__}"
            ) from None
        rcode = answer.rcode()
        if rcode != dns.rcode.NOERROR:
            # REFUSED / NOTAUTH: the key may not update this zone, a configuration matter.
            raise Dns01Error(
                f"RFC 2136 update to {host}:{port} ({what}) answered {dns.rcode.to_text(rcode)}",
                retryable=rcode in (dns.rcode.SERVFAIL,),
            )


def _txt(value: str) -> TXT:
    return TXT(dns.rdataclass.IN, dns.rdatatype.TXT, [value.encode("ascii")])
