from __future__ import annotations

import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from josepy import jwa, jwk

from certfleet.acme_issuer import (
    AccountId,
    AccountStore,
    AcmeError,
    InMemoryAccountStore,
    StoredAccount,
)
from certfleet.acme_issuer.accounts import (
    account_key_from_json,
    account_key_to_json,
    account_lock,
    new_account_key,
)

DIRECTORY = "https://acme.example.com/directory"


def _account(url: str = "https://acme.example.com/acct/1") -> StoredAccount:
    return StoredAccount(key_json=account_key_to_json(new_account_key()), account_url=url)


def test_the_in_memory_store_round_trips_one_account_per_directory_and_email() -> None:
    store: AccountStore = InMemoryAccountStore()
    first, second, third = _account(), _account("https://x/2"), _account("https://x/3")
    assert store.load(AccountId(DIRECTORY, "ops@example.com")) is None

    store.save(AccountId(DIRECTORY, "ops@example.com"), first)
    store.save(AccountId(DIRECTORY, "other@example.com"), second)
    store.save(AccountId("https://other.example.com/dir", "ops@example.com"), third)

    assert store.load(AccountId(DIRECTORY, "ops@example.com")) == first
    assert store.load(AccountId(DIRECTORY, "other@example.com")) == second
    assert store.load(AccountId("https://other.example.com/dir", "ops@example.com")) == third
    assert store.load(AccountId(DIRECTORY, None)) is None


def test_no_email_and_an_empty_email_are_the_same_account() -> None:
    store = InMemoryAccountStore()
    account = _account()
    store.save(AccountId(DIRECTORY, None), account)
    assert store.load(AccountId(DIRECTORY, "")) == account
    assert store.saves == 1
    assert account_lock(AccountId(DIRECTORY, None)) is account_lock(AccountId(DIRECTORY, ""))


def test_namespaces_and_binding_key_ids_never_share_an_account() -> None:
    ids = [
        AccountId(DIRECTORY, "ops@example.com"),
        AccountId(DIRECTORY, "ops@example.com", namespace="team-a"),
        AccountId(DIRECTORY, "ops@example.com", namespace="team-b"),
        AccountId(DIRECTORY, "ops@example.com", namespace="team-a", eab_key_id="kid-1"),
        AccountId(DIRECTORY, "ops@example.com", namespace="team-b", eab_key_id="kid-1"),
        AccountId(DIRECTORY, "ops@example.com", namespace="team-a", eab_key_id="kid-2"),
        AccountId(DIRECTORY, "ops@example.com", eab_key_id="kid-1"),
    ]
    assert len({account.digest() for account in ids}) == len(ids)
    assert len({id(account_lock(account)) for account in ids}) == len(ids)
    store = InMemoryAccountStore()
    store.save(ids[1], _account())
    assert all(store.load(other) is None for other in ids if other != ids[1])


def test_an_account_of_no_namespace_keeps_the_name_it_had_before_namespaces() -> None:
    # Accounts stored by (directory, email) only, before this release, are still found.
    before = hashlib.sha256(f"{DIRECTORY}\nops@example.com".encode()).hexdigest()[:16]
    assert AccountId(DIRECTORY, "ops@example.com").digest() == before


def test_the_account_lock_is_one_per_account_in_the_process() -> None:
    one = AccountId(DIRECTORY, "ops@example.com", namespace="team-a")
    assert account_lock(one) is account_lock(AccountId(DIRECTORY, "ops@example.com", "team-a"))
    assert account_lock(one) is not account_lock(AccountId(DIRECTORY, "ops@example.com"))


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
