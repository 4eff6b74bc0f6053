"""The DNS provider port of DNS-01: add and remove one TXT value, leaving every other value
at the same name alone (two challenges of one order may share `_acme-challenge.example.com`,
and other clients may keep their own values there).

Implementations: `rfc2136.Rfc2136Records` (dynamic updates with TSIG),
`exoscale.ExoscaleRecords` (Exoscale's DNS API v2 through its SDK) and
`lexicon_records.LexiconRecords` (the other cloud providers, through lexicon).
"""

from __future__ import annotations

from typing import Protocol

# Short, so a value left behind by a crash stops being served soon; resolvers cache no longer.
CHALLENGE_TTL_SECONDS = 60


class TxtRecords(Protocol):
    def add_txt(self, zone: str, fqdn: str, value: str) -> None:
        """Adds `value` to the TXT values at `fqdn` (in `zone`). Raises Dns01Error."""

    def remove_txt(self, zone: str, fqdn: str, value: str) -> None:
        """Removes exactly `value`; a value that is not there is no error. Raises Dns01Error."""
