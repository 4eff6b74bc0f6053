"""The Issuer port over acme_issuer: the spec's CA, the namespace's account at it, External
Account Binding from a Secret, and the challenge solver a `Solvers` picks (HTTP-01 alone by
default). No Kubernetes here:
the operator and the build machine each hand it their own account store and their own way
of reading a secret value."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

from certfleet.acme_issuer.accounts import AccountId, AccountStore
from certfleet.acme_issuer.binding import (
    ExternalAccountBinding,
    ExternalAccountBindingError,
    parse_binding,
)
from certfleet.acme_issuer.directories import resolve_directory_url
from certfleet.acme_issuer.http01 import ChallengeStore
from certfleet.acme_issuer.issuer import AcmeIssuer, PlacedOrder
from certfleet.acme_issuer.keys import KeyAlgorithm
from certfleet.acme_issuer.solvers import ChallengeSolver, Http01Solver
from certfleet.acme_issuer.transport import RequestHook
from certfleet.api.spec import CertificateSpec
from certfleet.controller.ports import PemPair, PendingOrder

# (namespace, secret name, key) -> the value, None when there is none.
SecretValue = Callable[[str, str, str], bytes | None]


class Solvers(Protocol):
    """Which challenge solver answers a certificate's order (controller.solvers)."""

    def for_certificate(self, spec: CertificateSpec, namespace: str) -> ChallengeSolver: ...

    def extra_seconds(self, solver: ChallengeSolver) -> float:
        """What the solver adds to an order's deadline (DNS-01's propagation wait)."""


class Http01Only:
    """Every order through the HTTP-01 responder."""

    def __init__(self, challenges: ChallengeStore) -> None:
        self._challenges = challenges

    def for_certificate(self, spec: CertificateSpec, namespace: str) -> ChallengeSolver:
        return Http01Solver(self._challenges)

    def extra_seconds(self, solver: ChallengeSolver) -> float:
        return 0.0


class _Journal:
    """acme_issuer's OrderJournal over the Issuer port's `placed` callback."""

    def __init__(self, placed: Callable[[PendingOrder], None]) -> None:
        self._placed = placed

    def placed(self, order: PlacedOrder) -> None:
        self._placed(
            PendingOrder(
                order.directory_url,
                order.account_url,
                order.order_url,
                order.names,
                order.private_key_pem,
            )
        )


def _placed_order(order: PendingOrder) -> PlacedOrder:
    return PlacedOrder(
        order.directory_url, order.account_url, order.order_url, order.names, order.key
    )


class AcmeIssuers:
    def __init__(
        self,
        accounts: AccountStore,
        challenges: ChallengeStore,
        secret_value: SecretValue,
        acme_ca_bundle: str | None = None,
        issuance_deadline_seconds: float = 120.0,
        on_acme_request: RequestHook | None = None,
        solvers: Solvers | None = None,
    ) -> None:
        self._solvers = solvers or Http01Only(challenges)
        self._accounts = accounts
        self._challenges = challenges
        self._secret_value = secret_value
        self._acme_ca_bundle = acme_ca_bundle
        self._deadline = issuance_deadline_seconds
        self._on_acme_request = on_acme_request
        self._issuers: dict[tuple[AccountId, ExternalAccountBinding | None], AcmeIssuer] = {}
        self._lock = threading.Lock()

    def issue(
        self,
        spec: CertificateSpec,
        namespace: str,
        replacing: bytes | None,
        resume: PendingOrder | None = None,
        placed: Callable[[PendingOrder], None] | None = None,
    ) -> PemPair:
        """An order at `spec.acme.server` (the decision puts the fallback it chose there),
        with the namespace's own account; `resume` a saved order, `placed` saves a new one."""
        assert spec.acme is not None
        issuer = self.for_directory(
            resolve_directory_url(spec.acme.server),
            email=spec.acme.email,
            external_account_binding=self._binding(spec, namespace),
            namespace=namespace,
        )
        solver = self._solvers.for_certificate(spec, namespace)
        issued = issuer.issue(
            spec.names,
            KeyAlgorithm(spec.acme.key_algorithm),
            self._deadline + self._solvers.extra_seconds(solver),
            replacing=replacing,
            solver=solver,
            journal=_Journal(placed) if placed is not None else None,
            resume=_placed_order(resume) if resume is not None else None,
        )
        return PemPair(issued.fullchain_pem, issued.private_key_pem)

    def for_directory(
        self,
        directory_url: str,
        email: str | None = None,
        external_account_binding: ExternalAccountBinding | None = None,
        namespace: str | None = None,
    ) -> AcmeIssuer:
        """The one issuer of a CA account (the renewal windows borrow its transport too).
        Kept, not built per order; the account's lock is process-wide anyway
        (`accounts.account_lock`), so N first issuances at start-up register one account,
        not N (a CA limits new accounts per IP)."""
        kid = external_account_binding.kid if external_account_binding else None
        key = (AccountId(directory_url, email or None, namespace, kid), external_account_binding)
        with self._lock:
            issuer = self._issuers.get(key)
            if issuer is None:
                issuer = AcmeIssuer(
                    directory_url,
                    self._accounts,
                    self._challenges,
                    email=email,
                    ca_bundle=self._acme_ca_bundle,
                    external_account_binding=external_account_binding,
                    on_request=self._on_acme_request,
                    namespace=namespace,
                )
                self._issuers[key] = issuer
            return issuer

    def _binding(self, spec: CertificateSpec, namespace: str) -> ExternalAccountBinding | None:
        """The spec's binding with its HMAC key from the Secret, validated before use."""
        assert spec.acme is not None
        if not spec.acme.eab_key_id or not spec.acme.eab_hmac_secret:
            return None
        secret_name, key = spec.acme.eab_hmac_secret
        hmac_key = self._secret_value(namespace, secret_name, key)
        if not hmac_key:
            raise ExternalAccountBindingError(
                f"the external account binding's Secret {namespace}/{secret_name} has no "
                f"key {key!r}: create it with the EAB HMAC key from the CA's console"
            )
        return parse_binding(spec.acme.eab_key_id, hmac_key)
