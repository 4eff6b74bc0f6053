"""ACME accounts: one per `AccountId` (directory URL, email, namespace, EAB key id), kept by
an `AccountStore`.

The Kubernetes adapter keeps them in a Secret; `InMemoryAccountStore` serves tests and
one-shot runs. An account is created once and then reused for every order: CAs rate-limit
new accounts, and a fresh key per order would orphan the CA's records. It is registered under
the process-wide lock of its id (`account_lock`), so N first issuances at start-up register
one account whichever issuer objects they run through.

The namespace is part of the id: an account is the CA's record of who asked, and an EAB
binding is a customer's contract with the CA, so one namespace never orders through the
account (or the binding) another namespace set up.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric import ec
from josepy import errors as jose_errors
from josepy import jwa, jwk

from certfleet.acme_issuer.errors import AcmeError


@dataclass(frozen=True)
class AccountId:
    """Whose ACME account: at which CA, for which contact, for which namespace (None: the
    whole installation, e.g. a build machine), bound to which EAB key id."""

    directory_url: str
    email: str | None = None
    namespace: str | None = None
    eab_key_id: str | None = None

    def digest(self) -> str:
        """A stable name for the account's Secret or file (16 hex digits). An account of no
        namespace and no binding keeps the name it had when accounts were keyed by
        (directory, email) only, so an upgrade reuses it."""
        parts = [self.directory_url, self.email or ""]
        if self.namespace is not None or self.eab_key_id is not None:
            parts += [f"namespace={self.namespace or ''}", f"eab={self.eab_key_id or ''}"]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


_locks: dict[str, threading.Lock] = {}  # by digest: no email and "" are one account
_locks_guard = threading.Lock()


def account_lock(account: AccountId) -> threading.Lock:
    """The one lock of an account in this process: registering it happens under it."""
    with _locks_guard:
        return _locks.setdefault(account.digest(), threading.Lock())


@dataclass(frozen=True)
class StoredAccount:
    """An account's private key as JWK JSON text and the account URL the CA assigned."""

    key_json: str = field(repr=False)  # private: never in a repr, a log or an exception
    account_url: str


class AccountStore(Protocol):
    def load(self, account: AccountId) -> StoredAccount | None: ...

    def save(self, account: AccountId, stored: StoredAccount) -> None: ...


class InMemoryAccountStore:
    """A thread-safe `AccountStore` in a dict; `saves` counts writes so tests can prove reuse."""

    def __init__(self) -> None:
        self._accounts: dict[str, StoredAccount] = {}
        self._lock = threading.Lock()
        self.saves = 0

    def load(self, account: AccountId) -> StoredAccount | None:
        with self._lock:
            return self._accounts.get(account.digest())

    def save(self, account: AccountId, stored: StoredAccount) -> None:
        with self._lock:
            self._accounts[account.digest()] = stored
            self.saves += 1


def new_account_key() -> jwk.JWKEC:
    """ECDSA P-256 (ES256): small JWS signatures, supported by every RFC 8555 CA."""
    return jwk.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))


def account_key_to_json(key: jwk.JWK) -> str:
    return str(key.json_dumps())


def account_key_from_json(key_json: str) -> tuple[jwk.JWK, jwa.JWASignature]:
    """The stored key and its JWS algorithm: ES256 for our own keys, RS256 for RSA accounts
    imported from elsewhere (certbot's default)."""
    try:
        fields = json.loads(key_json)
        key = jwk.JWK.from_json(fields)
    except (jose_errors.DeserializationError, ValueError, TypeError) as error:
        # The library's message could quote the key: name only the kind of failure.
        raise AcmeError(
            f"the stored ACME account key is not a valid JWK ({type(error).__name__})"
        ) from None
    if "d" in fields:  # a private key: the public half alone cannot sign
        if isinstance(key, jwk.JWKEC) and fields.get("crv") == "P-256":
            return key, jwa.ES256
        if isinstance(key, jwk.JWKRSA) and key.key.key_size >= 2048:
            return key, jwa.RS256
    raise AcmeError(
        "the stored ACME account key is not an ECDSA P-256 or RSA (>= 2048 bit) private key"
    )
