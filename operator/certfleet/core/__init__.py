"""Pure certificate logic: parsing, validity, renewal time, policy checks, domain names.

No I/O, no clock (time is an argument; ``clock.utc_now`` is defined here for the edges to
pass in), no kopf, kubernetes, boto3, acme or network imports (an import-linter contract in
pyproject.toml, checked by tests/unit/core/test_purity.py).

- ``clock``: utc_now (the edges' clock), rfc3339, parse_rfc3339
- ``addresses``: parse_host_port
- ``errors``: CertfleetError, InvalidDomainError, PemError (with a PemProblem code)
- ``domains``: validate_domain, domain_matches
- ``keys``: PrivateKey, describe_key
- ``pem``: parse_chain, parse_private_key, parse_trust_bundle, parse_bundle, CertificateBundle
- ``facts``: CertificateFacts, certificate_facts
- ``renewal``: renewal_time -> RenewalTime (the moment and its RenewalRule), needs_renewal,
  DEFAULT_RENEW_BEFORE
- ``checks``: Reason, Finding and one function per check
- ``policy``: evaluate, evaluate_bundle -> Valid | Failure
- ``fallback``: server_position, moves_on (which ACME server of a list the next order uses)
"""
