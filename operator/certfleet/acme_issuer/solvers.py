"""The challenge-solver port: how an issuance proves control of its names to the CA.

A solver is handed every challenge of one order at once (`present`), returns only when the CA
can see all of them, and takes them all back afterwards (`cleanup`, also after a failure).
`Http01Solver` puts key authorizations in the responder's store; the DNS-01 solver
(`dns01.solver`) publishes TXT records through the fleet's DNS provider.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from acme import challenges

from certfleet.acme_issuer.http01 import ChallengeStore


@dataclass(frozen=True)
class PendingChallenge:
    """One authorization's challenge, as the solver needs it: the name being proven (without
    any "*." of a wildcard), the challenge's token, and what the CA will look for
    (`validation`: the key authorization for HTTP-01, its digest for DNS-01)."""

    domain: str
    token: str
    validation: str = field(repr=False)


class ChallengeSolver(Protocol):
    # The acme library's challenge class this solver answers (challenges.HTTP01, .DNS01).
    challenge_type: type[challenges.KeyAuthorizationChallenge]
    # Whether names such as *.example.com can be proven this way (only DNS-01 can).
    validates_wildcards: bool

    def present(self, pending: Sequence[PendingChallenge], deadline: float) -> None:
        """Makes every challenge visible to the CA; `deadline` is a time.monotonic() value
        it must not wait past. Raises CertfleetError."""

    def cleanup(self, pending: Sequence[PendingChallenge]) -> None:
        """Removes what `present` put up (whatever part of it): never raises."""


class Http01Solver:
    """HTTP-01 through the operator's responder (`http01.Http01Server`)."""

    challenge_type = challenges.HTTP01
    validates_wildcards = False

    def __init__(self, store: ChallengeStore) -> None:
        self.store = store

    def present(self, pending: Sequence[PendingChallenge], deadline: float) -> None:
        for challenge in pending:
            self.store.put(challenge.token, challenge.validation)

    def cleanup(self, pending: Sequence[PendingChallenge]) -> None:
        for challenge in pending:
            self.store.remove(challenge.token)
