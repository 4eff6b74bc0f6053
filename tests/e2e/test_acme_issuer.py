"""The ACME issuer against the real pebble, HTTP-01 proxied by a real nginx to certfleet's
responder, as on a fleet webserver."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.verification import PolicyBuilder, Store

from certfleet.acme_issuer import (
    AccountId,
    AcmeChallengeFailedError,
    AcmeDeadlineExceededError,
    AcmeIssuer,
    AcmeUnavailableError,
    ChallengeStore,
    Http01Server,
    InMemoryAccountStore,
    IssuedCertificate,
    KeyAlgorithm,
    PlacedOrder,
    StoredAccount,
)
from certfleet.acme_issuer.accounts import account_key_to_json, new_account_key
from certfleet.acme_issuer.solvers import Http01Solver
from testbed.acme_ca import AcmeCA
from testbed.processes import free_port
from testbed.webserver import Nginx

pytestmark = pytest.mark.testbed

_ACCOUNT_LINE = re.compile(rb"There are now \d+ accounts in memory")


@dataclass
class Bed:
    ca: AcmeCA
    nginx: Nginx
    challenges: ChallengeStore
    accounts: InMemoryAccountStore

    def issuer(self, **options: object) -> AcmeIssuer:
        options.setdefault("email", "ops@certfleet.test")
        return AcmeIssuer(
            self.ca.directory_url,
            self.accounts,
            self.challenges,
            ca_bundle=str(self.ca.listener_ca_bundle),
            **options,  # type: ignore[arg-type]
        )

    def account(self) -> AccountId:
        """The account of `issuer()`'s default email."""
        return AccountId(self.ca.directory_url, "ops@certfleet.test")

    def accounts_created(self) -> int:
        assert self.ca.pebble is not None
        return len(_ACCOUNT_LINE.findall(self.ca.pebble.log_path.read_bytes()))

    def challenge_requests(self) -> int:
        log = (self.nginx.prefix / "access.log").read_text()
        return log.count("/.well-known/acme-challenge/")


@pytest.fixture
def responder() -> Iterator[Http01Server]:
    server = Http01Server(ChallengeStore(), "127.0.0.1", 0)
    server.start()
    yield server
    server.stop()


def _bed(
    start_acme_ca: Callable[..., AcmeCA],
    start_nginx: Callable[..., Nginx],
    responder: Http01Server,
    **ca_options: object,
) -> Bed:
    ca = start_acme_ca(**ca_options)
    nginx = start_nginx(
        http_port=ca.http_port, challenge_proxy=f"http://127.0.0.1:{responder.port}"
    )
    return Bed(ca, nginx, responder.store, InMemoryAccountStore())


@pytest.fixture
def bed(
    start_acme_ca: Callable[..., AcmeCA],
    start_nginx: Callable[..., Nginx],
    responder: Http01Server,
) -> Bed:
    return _bed(start_acme_ca, start_nginx, responder)


def _name() -> str:
    return f"issuer-{secrets.token_hex(4)}.certfleet.test"


def _check_issued(issued: IssuedCertificate, ca: AcmeCA, names: list[str]) -> x509.Certificate:
    chain = x509.load_pem_x509_certificates(issued.fullchain_pem)
    leaf, intermediates = chain[0], chain[1:]
    roots = x509.load_pem_x509_certificates(ca.issuing_roots_pem())
    verifier = (
        PolicyBuilder()
        .store(Store(roots))
        .time(datetime.now(UTC) + timedelta(seconds=5))
        .build_server_verifier(x509.DNSName(names[0]))
    )
    verifier.verify(leaf, intermediates)

    key = serialization.load_pem_private_key(issued.private_key_pem, password=None)
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert leaf.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki)
    assert issued.private_key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(san.get_values_for_type(x509.DNSName)) == sorted(names)
    return leaf


@pytest.mark.parametrize(
    ("algorithm", "key_type", "size"),
    [
        (KeyAlgorithm.ECDSA_P256, ec.EllipticCurvePrivateKey, 256),
        (KeyAlgorithm.ECDSA_P384, ec.EllipticCurvePrivateKey, 384),
        (KeyAlgorithm.RSA_2048, rsa.RSAPrivateKey, 2048),
    ],
)
def test_issues_a_verifiable_certificate_through_nginx(
    bed: Bed, algorithm: KeyAlgorithm, key_type: type, size: int
) -> None:
    names = [_name(), _name()]
    issued = bed.issuer().issue(names, algorithm, deadline=30)

    _check_issued(issued, bed.ca, names)
    key = serialization.load_pem_private_key(issued.private_key_pem, password=None)
    assert isinstance(key, key_type)
    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    assert key.key_size == size
    assert bed.ca.orders_created() == 1
    assert bed.challenge_requests() > 0  # validated through nginx's proxy_pass
    assert len(bed.challenges) == 0  # tokens removed afterwards


def test_second_issuance_reuses_the_stored_account(bed: Bed) -> None:
    issuer = bed.issuer()
    issuer.issue([_name()], KeyAlgorithm.ECDSA_P256, deadline=30)
    stored = bed.accounts.load(bed.account())
    assert stored is not None
    assert bed.accounts.saves == 1

    # A fresh issuer (an operator restart) with the same store: same account, no new one.
    bed.issuer().issue([_name()], KeyAlgorithm.RSA_2048, deadline=30)
    assert bed.accounts.load(bed.account()) == stored
    assert bed.accounts.saves == 1
    assert bed.accounts_created() == 1
    assert bed.ca.orders_created() == 2


def test_a_forgotten_account_is_registered_again_with_the_same_key(bed: Bed) -> None:
    """pebble restarted (or the CA deleted the account): re-register the stored key."""
    issuer = bed.issuer()
    issuer.issue([_name()], deadline=30)
    stored = bed.accounts.load(bed.account())
    assert stored is not None
    unknown = replace(stored, account_url=stored.account_url.rsplit("/", 1)[0] + "/0badc0de")
    bed.accounts.save(bed.account(), unknown)

    issuer.issue([_name()], deadline=30)

    again = bed.accounts.load(bed.account())
    assert again is not None
    assert again.key_json == stored.key_json
    # Same key, so pebble hands back the existing account rather than a new one.
    assert again.account_url == stored.account_url
    assert bed.accounts_created() == 1
    assert bed.ca.orders_created() == 2


def test_an_account_the_ca_never_knew_is_registered_with_the_stored_key(bed: Bed) -> None:
    """A pebble restart loses every account: the stored key gets a new account URL."""
    issuer = bed.issuer()
    issuer.issue([_name()], deadline=30)
    first = bed.accounts.load(bed.account())
    assert first is not None
    key_json = account_key_to_json(new_account_key())  # a key pebble has never seen
    forgotten = StoredAccount(key_json=key_json, account_url=first.account_url + "0")
    bed.accounts.save(bed.account(), forgotten)

    issuer.issue([_name()], deadline=30)

    again = bed.accounts.load(bed.account())
    assert again is not None
    assert again.key_json == key_json
    assert again.account_url not in (first.account_url, forgotten.account_url)
    assert bed.accounts_created() == 2
    assert bed.ca.orders_created() == 2


def test_valid_authorizations_are_reused_without_a_challenge(
    start_acme_ca: Callable[..., AcmeCA],
    start_nginx: Callable[..., Nginx],
    responder: Http01Server,
) -> None:
    bed = _bed(start_acme_ca, start_nginx, responder, authz_reuse_percent=100)
    issuer, name = bed.issuer(), _name()
    issuer.issue([name], deadline=30)
    validations = bed.challenge_requests()
    assert validations > 0

    issued = issuer.issue([name], deadline=30)
    _check_issued(issued, bed.ca, [name])
    assert bed.challenge_requests() == validations
    assert bed.ca.orders_created() == 2


def test_an_unanswered_challenge_fails_fast_with_the_cas_detail(bed: Bed) -> None:
    """The responder runs but does not know the token (another store): nginx relays a 404."""
    issuer = AcmeIssuer(
        bed.ca.directory_url,
        bed.accounts,
        ChallengeStore(),
        ca_bundle=str(bed.ca.listener_ca_bundle),
    )
    name = _name()
    started = time.monotonic()
    with pytest.raises(AcmeChallengeFailedError) as failed:
        issuer.issue([name], deadline=60)
    elapsed = time.monotonic() - started
    print(f"the invalid challenge was noticed after {elapsed:.1f} s (deadline 60 s)")

    # Fast means on the CA's answer, not at the deadline: waiting it out would have raised
    # AcmeDeadlineExceededError instead.
    assert failed.value.domain == name
    assert name in str(failed.value)
    assert "404" in failed.value.detail
    assert "PRIVATE KEY" not in str(failed.value)


def test_an_unreachable_responder_fails_fast(
    start_acme_ca: Callable[..., AcmeCA], start_nginx: Callable[..., Nginx]
) -> None:
    """nginx proxies to a closed port: the CA sees a 502."""
    ca = start_acme_ca()
    nginx = start_nginx(http_port=ca.http_port, challenge_proxy=f"http://127.0.0.1:{free_port()}")
    store = ChallengeStore()
    issuer = AcmeIssuer(
        ca.directory_url, InMemoryAccountStore(), store, ca_bundle=str(ca.listener_ca_bundle)
    )
    started = time.monotonic()
    with pytest.raises(AcmeChallengeFailedError) as failed:
        issuer.issue([_name()], deadline=60)
    assert time.monotonic() - started < 5
    assert "502" in failed.value.detail
    assert len(store) == 0
    assert "/.well-known/acme-challenge/" in (nginx.prefix / "access.log").read_text()


def test_an_exhausted_deadline_stops_the_issuance(bed: Bed) -> None:
    with pytest.raises(AcmeDeadlineExceededError, match="did not finish within"):
        bed.issuer().issue([_name()], deadline=1e-6)
    assert bed.ca.orders_created() == 0


def test_a_ca_whose_tls_is_not_trusted_is_unavailable(bed: Bed) -> None:
    issuer = AcmeIssuer(bed.ca.directory_url, bed.accounts, bed.challenges)  # no ca_bundle
    with pytest.raises(AcmeUnavailableError, match="SSLError"):
        issuer.issue([_name()], deadline=30)
    assert bed.accounts.saves == 0


def test_the_request_hook_sees_every_step(bed: Bed) -> None:
    seen: list[tuple[float, str]] = []
    bed.issuer(on_request=lambda seconds, operation: seen.append((seconds, operation))).issue(
        [_name()], deadline=30
    )
    operations = {operation for _, operation in seen}
    assert {"directory", "new-account", "new-order", "answer-challenge"} <= operations
    assert {"poll-authorization", "finalize", "download-certificate"} <= operations
    assert all(seconds >= 0 for seconds, _ in seen)


def test_an_issuer_keeps_its_connection_to_the_ca_between_orders(bed: Bed) -> None:
    operations: list[str] = []
    issuer = bed.issuer(on_request=lambda _seconds, operation: operations.append(operation))
    issuer.issue([_name()], deadline=30)
    assert operations.count("directory") == 1

    operations.clear()
    issued = issuer.issue([_name()], deadline=30)
    # The kept connection: no directory, and the nonce of the last reply saves a newNonce
    # HEAD: newOrder and its authorization are the order's only requests before the answer.
    assert "directory" not in operations and "new-account" not in operations
    assert operations[:3] == ["new-order", "new-order", "answer-challenge"]
    assert bed.ca.orders_created() == 2
    x509.load_pem_x509_certificate(issued.fullchain_pem)

    # The store is the truth: another account saved meanwhile is spoken for at once.
    key_json = account_key_to_json(new_account_key())
    stored = bed.accounts.load(bed.account())
    assert stored is not None
    bed.accounts.save(bed.account(), StoredAccount(key_json, stored.account_url + "0"))
    operations.clear()
    issuer.issue([_name()], deadline=30)
    assert operations.count("directory") == 1 and "new-account" in operations
    again = bed.accounts.load(bed.account())
    assert again is not None and again.key_json == key_json
    issuer.close()


def test_after_a_failed_order_the_next_one_starts_afresh(bed: Bed) -> None:
    operations: list[str] = []
    issuer = bed.issuer(on_request=lambda _seconds, operation: operations.append(operation))
    issuer.issue([_name()], deadline=30)
    # The responder is asked for a token it does not know: the challenge fails.
    with pytest.raises(AcmeChallengeFailedError):
        issuer.issue([_name()], deadline=60, solver=Http01Solver(ChallengeStore()))
    operations.clear()
    issuer.issue([_name()], deadline=30)
    assert operations.count("directory") == 1, "the connection of a failed order was kept"


class _Crash(BaseException):
    """The process died right after the order was saved."""


class _Journal:
    def __init__(self, crash: bool) -> None:
        self.orders: list[PlacedOrder] = []
        self.crash = crash

    def placed(self, order: PlacedOrder) -> None:
        self.orders.append(order)
        if self.crash:
            raise _Crash


def test_an_order_saved_before_a_crash_is_resumed_not_placed_again(bed: Bed) -> None:
    names = [_name(), _name()]
    journal = _Journal(crash=True)
    with pytest.raises(_Crash):
        bed.issuer().issue(names, deadline=30, journal=journal)
    (saved,) = journal.orders
    assert "PRIVATE" not in repr(saved)
    assert saved.directory_url == bed.ca.directory_url and saved.names == tuple(names)

    # A fresh issuer, as after a restart: the pending order is answered and finalised.
    issued = bed.issuer().issue(names, deadline=30, resume=saved, journal=_Journal(crash=True))
    _check_issued(issued, bed.ca, names)
    assert issued.private_key_pem == saved.private_key_pem
    assert bed.ca.orders_created() == 1
    assert len(bed.challenges) == 0


def test_a_ready_order_is_finalised_with_the_saved_key(
    start_acme_ca: Callable[..., AcmeCA],
    start_nginx: Callable[..., Nginx],
    responder: Http01Server,
) -> None:
    bed = _bed(start_acme_ca, start_nginx, responder, authz_reuse_percent=100)
    name = _name()
    bed.issuer().issue([name], deadline=30)  # its authorization is valid from now on
    journal = _Journal(crash=True)
    with pytest.raises(_Crash):
        bed.issuer().issue([name], deadline=30, journal=journal)  # "ready" at once
    issued = bed.issuer().issue([name], deadline=30, resume=journal.orders[0])
    _check_issued(issued, bed.ca, [name])
    assert issued.private_key_pem == journal.orders[0].private_key_pem
    assert bed.ca.orders_created() == 2


def test_a_valid_order_gives_its_certificate_again_and_a_lost_one_a_new_order(bed: Bed) -> None:
    names = [_name()]
    journal = _Journal(crash=False)
    first = bed.issuer().issue(names, deadline=30, journal=journal)
    (saved,) = journal.orders
    again = bed.issuer().issue(names, deadline=30, resume=saved)
    assert again == first  # downloaded again: the same certificate, the same key
    assert bed.ca.orders_created() == 1

    for unusable in (
        replace(saved, order_url=saved.order_url + "-unknown"),  # the CA forgot it
        replace(saved, names=(_name(),)),  # the spec's names changed
        replace(saved, account_url=saved.account_url + "-other"),
        replace(
            saved, private_key_pem=b"-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n"
        ),
    ):
        fresh = bed.issuer().issue(names, deadline=30, resume=unusable)
        _check_issued(fresh, bed.ca, names)
        assert fresh.private_key_pem != saved.private_key_pem
    assert bed.ca.orders_created() == 5
