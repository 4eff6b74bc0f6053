from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from josepy import jwa, jwk

from certfleet.acme_issuer import AccountStore, AcmeError, InMemoryAccountStore, StoredAccount
from certfleet.acme_issuer.accounts import (
    account_key_from_json,
    account_key_to_json,
    new_account_key,
)

DIRECTORY = "https://acme.example.com/directory"


def _account(url: str = "https://acme.example.com/acct/1") -> StoredAccount:
    return StoredAccount(key_json=account_key_to_json(new_account_key()), account_url=url)


def test_the_in_memory_store_round_trips_one_account_per_directory_and_email() -> None:
    store: AccountStore = InMemoryAccountStore()
    first, second, third = _account(), _account("https://x/2"), _account("https://x/3")
    assert store.load(DIRECTORY, "ops@example.com") is None

    store.save(DIRECTORY, "ops@example.com", first)
    store.save(DIRECTORY, "other@example.com", second)
    store.save("https://other.example.com/dir", "ops@example.com", third)

    assert store.load(DIRECTORY, "ops@example.com") == first
    assert store.load(DIRECTORY, "other@example.com") == second
    assert store.load("https://other.example.com/dir", "ops@example.com") == third
    assert store.load(DIRECTORY, None) is None


def test_no_email_and_an_empty_email_are_the_same_account() -> None:
    store = InMemoryAccountStore()
    account = _account()
    store.save(DIRECTORY, None, account)
    assert store.load(DIRECTORY, "") == account
    assert store.saves == 1


def test_the_private_key_is_not_in_the_repr() -> None:
    account = _account()
    assert '"d"' in account.key_json
    assert account.key_json not in repr(account)
    assert json.loads(account.key_json)["d"] not in repr(account)
    assert account.account_url in repr(account)


def test_a_new_account_key_is_es256_and_round_trips() -> None:
    key = new_account_key()
    fields = json.loads(account_key_to_json(key))
    assert (fields["kty"], fields["crv"]) == ("EC", "P-256")
    assert "d" in fields  # the private key, or the account could never sign again

    loaded, alg = account_key_from_json(account_key_to_json(key))
    assert alg is jwa.ES256
    assert loaded == key


def test_an_imported_rsa_account_key_signs_with_rs256() -> None:
    key = jwk.JWKRSA(key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    _, alg = account_key_from_json(key.json_dumps())
    assert alg is jwa.RS256


@pytest.mark.parametrize(
    "key_json",
    [
        "not json",
        "{}",
        '{"kty": "oct", "k": "c2VjcmV0"}',
        jwk.JWKEC(key=ec.generate_private_key(ec.SECP384R1())).json_dumps(),
        jwk.JWKEC(key=ec.generate_private_key(ec.SECP256R1()).public_key()).json_dumps(),
        jwk.JWKRSA(key=rsa.generate_private_key(65537, 1024)).json_dumps(),
    ],
)
def test_an_unusable_stored_key_is_refused_without_quoting_it(key_json: str) -> None:
    with pytest.raises(AcmeError) as refused:
        account_key_from_json(key_json)
    assert key_json not in str(refused.value)
    assert "c2VjcmV0" not in str(refused.value)
    assert refused.value.__cause__ is None
