"""The policy chain: is this certificate acceptable for this spec right now, and if not, why?

cert-manager's pattern: an ordered list of small checks over what is known about a
certificate, stopping at the first failure. The order is part of the API, because it decides
which reason is reported when several apply:

    Missing, InvalidPEM, BrokenChain (a reversed chain), KeyMismatch, WeakKey, NameMismatch,
    NotForServers, BrokenChain (a link), UntrustedChain, NotYetValid, Expired, RenewalDue

A certificate passing all of them is Valid, with the time it expires and the time it should
be renewed; its message, like RenewalDue's, names the renewal rule that set that time
(``core.renewal``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeAlias

from cryptography import x509

from certfleet.core import checks
from certfleet.core.checks import Finding, Reason
from certfleet.core.clock import rfc3339
from certfleet.core.domains import validate_domain
from certfleet.core.errors import PemError
from certfleet.core.facts import CertificateFacts, certificate_facts
from certfleet.core.pem import CertificateBundle, parse_bundle
from certfleet.core.renewal import DEFAULT_RENEW_BEFORE, RenewalTime, renewal_time


@dataclass(frozen=True, slots=True)
class Valid:
    """Acceptable now; keep it until ``renew_at``, which ``renewal`` explains."""

    not_after: datetime
    renewal: RenewalTime
    facts: CertificateFacts

    @property
    def ok(self) -> bool:
        return True

    @property
    def renew_at(self) -> datetime:
        return self.renewal.at

    @property
    def message(self) -> str:
        return (
            f"valid until {rfc3339(self.not_after)}, renew at {rfc3339(self.renew_at)} "
            f"({self.renewal.explanation})"
        )


@dataclass(frozen=True, slots=True)
class Failure:
    """Not acceptable as the current certificate: issue (or, for MANUAL, ask for) a new one.

    ``facts`` is set whenever the certificate parsed; ``renew_at`` when it is otherwise valid
    but its renewal time has come (reason RenewalDue), and ``renewal`` with the rule that set
    it when the policy decided so.
    """

    reason: Reason
    message: str
    facts: CertificateFacts | None = None
    renew_at: datetime | None = None
    renewal: RenewalTime | None = None

    @property
    def ok(self) -> bool:
        return False


Verdict: TypeAlias = Valid | Failure


def fit_to_serve(verdict: Verdict) -> bool:
    """The first of cert-manager's two questions: can this be served right now? Valid, or
    only due for renewal (the second question: a replacement is wanted, this one stays)."""
    return isinstance(verdict, Valid) or verdict.reason is Reason.RenewalDue


def evaluate(
    fullchain: bytes | None,
    privkey: bytes | None,
    *,
    names: Sequence[str],
    now: datetime,
    renew_before: timedelta = DEFAULT_RENEW_BEFORE,
    trust_roots: Sequence[x509.Certificate] | None = None,
    ari_window: tuple[datetime, datetime] | None = None,
) -> Verdict:
    """Judge the PEM files as read from a store (None or empty: not there).

    ``names`` are the spec's domain and alternative names; an invalid one raises
    InvalidDomainError (a spec error, not a certificate error). ``trust_roots``: the roots
    the chain must lead to (``core.trust``); None skips the trust check (only the tests and
    a caller that judges something already verified do). ``now`` must be timezone-aware.
    """
    _check_arguments(names, now)
    if not fullchain:
        return Failure(Reason.Missing, "no certificate chain is stored")
    if not privkey:
        return Failure(Reason.Missing, "no private key is stored")
    try:
        bundle = parse_bundle(fullchain, privkey)
    except PemError as exc:
        return Failure(Reason.InvalidPEM, str(exc))
    return evaluate_bundle(
        bundle,
        names=names,
        now=now,
        renew_before=renew_before,
        trust_roots=trust_roots,
        ari_window=ari_window,
    )


def evaluate_bundle(
    bundle: CertificateBundle | None,
    *,
    names: Sequence[str],
    now: datetime,
    renew_before: timedelta = DEFAULT_RENEW_BEFORE,
    trust_roots: Sequence[x509.Certificate] | None = None,
    ari_window: tuple[datetime, datetime] | None = None,
) -> Verdict:
    """Judge an already parsed bundle (None: not there); see ``evaluate``."""
    wanted = _check_arguments(names, now)
    if bundle is None:
        return Failure(Reason.Missing, "no certificate is stored")
    chain = bundle.chain
    policy: tuple[Callable[[], Finding | None], ...] = (
        lambda: checks.check_leaf_first(chain),
        lambda: checks.check_key_matches(bundle.leaf, bundle.key),
        lambda: checks.check_key_strength(bundle.leaf),
        lambda: checks.check_names(bundle.leaf, wanted),
        lambda: checks.check_server_certificate(bundle.leaf),
        lambda: checks.check_chain_links(chain),
        lambda: (
            None
            if trust_roots is None
            else checks.check_trust(chain, trust_roots, now, wanted[0] if wanted else "")
        ),
        lambda: checks.check_not_yet_valid(chain, now),
        lambda: checks.check_expired(chain, now),
    )
    facts = certificate_facts(bundle.leaf)
    for check in policy:
        finding = check()
        if finding is not None:
            return Failure(finding.reason, finding.message, facts)
    renewal = renewal_time(facts.not_before, facts.not_after, renew_before, ari_window)
    if now >= renewal.at:
        return Failure(
            Reason.RenewalDue,
            f"renewal is due since {rfc3339(renewal.at)} ({renewal.explanation}); the "
            f"certificate expires at {rfc3339(facts.not_after)}",
            facts,
            renewal.at,
            renewal,
        )
    return Valid(not_after=facts.not_after, renewal=renewal, facts=facts)


def _check_arguments(names: Sequence[str], now: datetime) -> list[str]:
    """Caller errors surface before anything is said about the certificate."""
    if isinstance(names, str):  # a str is a Sequence[str] too: one name per character
        raise TypeError("names must be a sequence of names, not a single string")
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware, got naive {now.isoformat()}")
    return [validate_domain(name) for name in names]
