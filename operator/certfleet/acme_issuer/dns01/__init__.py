"""DNS-01 (RFC 8555 section 8.4): where the TXT record goes and when it is visible (`lookup`),
the provider port (`records`) with RFC 2136 (`rfc2136`), Exoscale API v2 (`exoscale`) and
lexicon (`lexicon_records`) implementations, and the solver that ties them together with a
crash-proof ledger (`solver`).
"""
