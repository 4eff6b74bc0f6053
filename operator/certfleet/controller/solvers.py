"""Which challenge solver answers a certificate's order (the factory behind AcmeIssuers):
HTTP-01 through the operator's responder, or DNS-01 through the DNS provider that the
resource (`spec.acme.dns01`) or else its CloudHost (`spec.dns01`) names, with credentials
from that Secret. Credentials are read per issuance and never logged or reported.

The DNS-01 records in flight are written down in a Secret of the operator's namespace per
certificate (`SecretRecordLedger`), so what a crash left behind is removed at the next
issuance of that certificate (kopf never runs two reconciliations of one resource at once).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from certfleet.acme_issuer.dns01.exoscale import exoscale_records
from certfleet.acme_issuer.dns01.lexicon_records import LexiconRecords, provider_options
from certfleet.acme_issuer.dns01.lookup import DnsLookup, Server, system_resolver
from certfleet.acme_issuer.dns01.records import TxtRecords
from certfleet.acme_issuer.dns01.rfc2136 import Rfc2136Records
from certfleet.acme_issuer.dns01.solver import (
    DEFAULT_POLL_INTERVAL_SECONDS,
    DEFAULT_PROPAGATION_TIMEOUT_SECONDS,
    Dns01Solver,
    PublishedRecord,
    remove_leftovers,
)
from certfleet.acme_issuer.errors import Dns01Error
from certfleet.acme_issuer.http01 import ChallengeStore
from certfleet.acme_issuer.solvers import ChallengeSolver, Http01Solver
from certfleet.api.spec import CertificateSpec, Dns01Settings, InvalidSpecError, parse_cloudhost
from certfleet.core.addresses import parse_host_port
from certfleet.core.errors import CertfleetError
from certfleet.kube.gateway import KubernetesGateway

RECORDS_KEY = "records.json"
LEDGER_LABEL = "certfleet.io/dns01-records"
# Secret keys of the rfc2136 provider (exoscale's are in dns01.exoscale; lexicon providers
# take lexicon's option names).
RFC2136_SERVER = "server"
RFC2136_KEY_NAME = "tsigKeyName"
RFC2136_SECRET = "tsigSecret"  # noqa: S105 - the name of a key, not a password
RFC2136_ALGORITHM = "tsigAlgorithm"


class SolverNotConfiguredError(CertfleetError):
    """DNS-01 was asked for but no usable provider is configured (the message says what)."""


@dataclass(frozen=True)
class Dns01Options:
    """The operator's own DNS-01 settings (flags): which resolver finds the zones, the port
    the zones' nameservers answer on, and how long to wait for a record to propagate."""

    resolver: Server | None = None  # None: the first nameserver of /etc/resolv.conf
    nameserver_port: int = 53
    propagation_timeout: float = DEFAULT_PROPAGATION_TIMEOUT_SECONDS
    poll_interval: float = DEFAULT_POLL_INTERVAL_SECONDS


class SecretRecordLedger:
    """The DNS-01 records of one certificate in flight, in a Secret of the operator's
    namespace (a Secret, as it names where the provider's credentials are)."""

    def __init__(self, gateway: KubernetesGateway, namespace: str, name: str) -> None:
        self._gateway, self._namespace, self.name = gateway, namespace, name

    def load(self) -> list[PublishedRecord]:
        secret = self._gateway.read_secret(self._namespace, self.name)
        raw = secret.value(RECORDS_KEY) if secret else None
        try:
            items = json.loads(raw) if raw else []
            return [PublishedRecord(**item) for item in items]
        except (ValueError, TypeError):
            return []  # unreadable: nothing we can act on

    def save(self, records: Sequence[PublishedRecord]) -> None:
        body = json.dumps([asdict(record) for record in records]).encode()
        self._gateway.write_secret(
            self._namespace, self.name, "Opaque", {RECORDS_KEY: body}, {LEDGER_LABEL: "true"}, {}
        )


class ChallengeSolvers:
    def __init__(
        self,
        gateway: KubernetesGateway,
        namespace: str,
        challenges: ChallengeStore,
        options: Dns01Options | None = None,
    ) -> None:
        self._gateway = gateway
        self._namespace = namespace
        self._challenges = challenges
        self.options = options or Dns01Options()

    def for_certificate(self, spec: CertificateSpec, namespace: str) -> ChallengeSolver:
        """The solver of this certificate's next order; for DNS-01, first removes what an
        earlier order of it left behind."""
        assert spec.acme is not None
        if spec.acme.challenge_type != "DNS-01":
            return Http01Solver(self._challenges)
        settings = spec.acme.dns01 or self._cloudhost_dns01(spec.cloudhost)
        if settings is None:
            raise SolverNotConfiguredError(
                "challengeType DNS-01 needs a DNS provider: set spec.acme.dns01 or the "
                f"CloudHost {spec.cloudhost}'s spec.dns01"
            )
        ledger = SecretRecordLedger(self._gateway, self._namespace, _ledger_name(spec, namespace))
        remove_leftovers(ledger, lambda provider: self._records(provider, namespace))
        provider = _provider_ref(settings, namespace)
        options = self.options
        return Dns01Solver(
            self._records(provider, namespace),
            provider,
            DnsLookup(options.resolver or system_resolver(), options.nameserver_port),
            ledger,
            propagation_timeout=options.propagation_timeout,
            poll_interval=options.poll_interval,
        )

    def extra_seconds(self, solver: ChallengeSolver) -> float:
        """DNS-01's propagation wait comes on top of an order's deadline."""
        return self.options.propagation_timeout if isinstance(solver, Dns01Solver) else 0.0

    def _cloudhost_dns01(self, cloudhost: str) -> Dns01Settings | None:
        raw = self._gateway.get_cloudhost(cloudhost)
        if raw is None:
            return None
        try:
            return parse_cloudhost(cloudhost, raw.get("spec") or {}).dns01
        except InvalidSpecError as error:
            raise SolverNotConfiguredError(str(error)) from None

    def _records(self, provider: str, namespace: str) -> TxtRecords:
        """The provider of a reference `name:namespace/secret` (as the ledger keeps it)."""
        name, _, where = provider.partition(":")
        secret_namespace, _, secret_name = where.partition("/")
        secret = self._gateway.read_secret(secret_namespace, secret_name)
        if secret is None:
            raise SolverNotConfiguredError(
                f"the DNS provider Secret {secret_namespace}/{secret_name} does not exist"
            )
        data = dict(secret.data)
        if name == "rfc2136":
            return _rfc2136(data, f"{secret_namespace}/{secret_name}")
        try:
            if name == "exoscale":  # API v2 through Exoscale's SDK; lexicon's speaks v1
                return exoscale_records(data)
            return LexiconRecords(name, provider_options(data))
        except Dns01Error as error:
            raise SolverNotConfiguredError(str(error)) from None


def _rfc2136(data: dict[str, bytes], where: str) -> Rfc2136Records:
    def text(key: str, default: str | None = None) -> str:
        value = data.get(key)
        if value is None and default is None:
            raise SolverNotConfiguredError(f"the rfc2136 Secret {where} needs the key {key!r}")
        return value.decode().strip() if value is not None else str(default)

    try:
        address = text(RFC2136_SERVER)
        server = parse_host_port(address if ":" in address else f"{address}:53")
        return Rfc2136Records(
            server,
            text(RFC2136_KEY_NAME),
            text(RFC2136_SECRET),
            text(RFC2136_ALGORITHM, "hmac-sha256"),
        )
    except (ValueError, Dns01Error) as error:
        raise SolverNotConfiguredError(f"the rfc2136 Secret {where}: {error}") from None


def _provider_ref(settings: Dns01Settings, namespace: str) -> str:
    return f"{settings.provider}:{settings.secret_namespace or namespace}/{settings.secret_name}"


def _ledger_name(spec: CertificateSpec, namespace: str) -> str:
    identity = f"{namespace}\n{spec.domain}\n{spec.cloudhost}\n{spec.build_identifier}"
    return f"certfleet-dns01-{hashlib.sha256(identity.encode()).hexdigest()[:16]}"
