"""Certificate issuance through ACME (RFC 8555): the one adapter around the acme library's
ClientV2.

One `issue()` is one order: account (stored, else registered once), new order, the solver's
challenge (HTTP-01 or DNS-01, see `solvers`) for every authorization that is not already
valid, finalization, certificate. The order is never lost: once placed, it is handed to an
`OrderJournal` (the new key, the order and account URLs) before any challenge is answered or
the order finalised, and a later `issue(resume=...)` carries that order on instead of placing
another (after a crash: its certificate is downloaded, or it is finalised with the saved key).
Every step runs against one explicit deadline, and polls honour the CA's Retry-After instead
of the library's fixed one-second sleeps (`poll_and_finalize`), which on a fast CA make
issuance ~30x slower.
`renewal_info()` asks the CA when it would like a certificate renewed (ARI, see `ari`), and a
renewal names the certificate it replaces when the CA offers ARI.

An issuer keeps its connections to the CA between issuances (`_Connection`, in an
`IdlePool`): the TLS connection, the directory, the account and the nonces the CA handed out,
so an order does not begin with a handshake, a directory GET and a newNonce HEAD.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from typing import Protocol

import requests
from acme import challenges, messages
from acme import errors as acme_errors
from acme.client import ClientNetwork, ClientV2
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from josepy import jwa, jwk
from josepy.json_util import field as json_field

from certfleet.acme_issuer import ari
from certfleet.acme_issuer.accounts import (
    AccountId,
    AccountStore,
    StoredAccount,
    account_key_from_json,
    account_key_to_json,
    account_lock,
    new_account_key,
)
from certfleet.acme_issuer.binding import (
    ExternalAccountBinding,
    ExternalAccountBindingError,
    ExternalAccountBindingRequiredError,
)
from certfleet.acme_issuer.errors import AcmeError, AcmeRejectedError
from certfleet.acme_issuer.http01 import ChallengeStore
from certfleet.acme_issuer.keys import (
    DEFAULT_KEY_ALGORITHM,
    KeyAlgorithm,
    generate_private_key,
    make_csr,
    private_key_pem,
)
from certfleet.acme_issuer.polling import Backoff, parse_retry_after
from certfleet.acme_issuer.problems import challenge_failed, describe_problem, translate
from certfleet.acme_issuer.solvers import ChallengeSolver, Http01Solver, PendingChallenge
from certfleet.acme_issuer.transport import DeadlineAdapter, Exchange, IdlePool, RequestHook

log = logging.getLogger(__name__)

DEFAULT_DEADLINE_SECONDS = 300.0
DEFAULT_REQUEST_TIMEOUT_SECONDS = 30.0
# A kept connection older than this fetches the directory again (a CA may change its URLs or
# its terms); the account and the TLS session do not need it.
DIRECTORY_MAX_AGE_SECONDS = 3600.0


@functools.cache
def _default_user_agent() -> str:
    # Package metadata is read from disk: once per process, not per issuer.
    try:
        version = metadata.version("certfleet")
    except metadata.PackageNotFoundError:
        version = "dev"
    return f"certfleet/{version} acme-python/{metadata.version('acme')}"


@dataclass(frozen=True)
class IssuedCertificate:
    fullchain_pem: bytes
    private_key_pem: bytes = field(repr=False)


@dataclass(frozen=True)
class PlacedOrder:
    """What resumes an order after a crash: where it is, the account it belongs to, the
    names it is for, and the private key its CSR is (to be) made from."""

    directory_url: str
    account_url: str
    order_url: str
    names: tuple[str, ...]
    private_key_pem: bytes = field(repr=False)


class OrderJournal(Protocol):
    """Where an order placed is saved, durably, before the CA is asked to finalise it."""

    def placed(self, order: PlacedOrder) -> None:
        """Raises to stop the order (it is then never finalised: no certificate is lost)."""


class AcmeIssuer:
    """Issues certificates from one ACME directory with one account (`account`: the
    directory, the email, the namespace it orders for, the EAB key id).

    Thread-safe: every `issue()` has a connection to the CA of its own, a kept one (see
    `_Connection`) or a new one, given back for the next issuance only when it succeeded;
    registering the account is serialised under the account's process-wide lock, so
    concurrent first issuances share one account even through separate issuer objects.
    """

    def __init__(
        self,
        directory_url: str,
        account_store: AccountStore,
        challenge_store: ChallengeStore,
        email: str | None = None,
        ca_bundle: str | None = None,
        external_account_binding: ExternalAccountBinding | tuple[str, str] | None = None,
        user_agent: str | None = None,
        timeout: float = DEFAULT_REQUEST_TIMEOUT_SECONDS,
        on_request: RequestHook | None = None,
        namespace: str | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory_url = directory_url
        self.account_store = account_store
        self.challenges = challenge_store
        self.email = email or None
        self.ca_bundle = ca_bundle
        if isinstance(external_account_binding, tuple):
            external_account_binding = ExternalAccountBinding(*external_account_binding)
        self.external_account_binding = external_account_binding
        self.user_agent = user_agent or _default_user_agent()
        self.timeout = timeout
        self.on_request = on_request
        self.account = AccountId(
            directory_url,
            self.email,
            namespace,
            external_account_binding.kid if external_account_binding else None,
        )
        self._account_lock = account_lock(self.account)
        self._monotonic = monotonic
        self._connections: IdlePool[_Connection] = IdlePool(monotonic=monotonic)
        self._ari = ari.RenewalInfoSource(
            directory_url,
            ca_bundle=ca_bundle,
            user_agent=self.user_agent,
            timeout=timeout,
            on_request=on_request,
            monotonic=monotonic,
        )

    def close(self) -> None:
        """Closes the kept connections (an issuer stays usable: it opens new ones)."""
        self._connections.close()
        self._ari.close()

    def issue(
        self,
        names: Sequence[str],
        key_algorithm: KeyAlgorithm = DEFAULT_KEY_ALGORITHM,
        deadline: float = DEFAULT_DEADLINE_SECONDS,
        replacing: bytes | None = None,
        solver: ChallengeSolver | None = None,
        journal: OrderJournal | None = None,
        resume: PlacedOrder | None = None,
    ) -> IssuedCertificate:
        """A certificate for `names` with a fresh `key_algorithm` key; `deadline` is the number
        of seconds from now the whole issuance may take. `replacing` is the PEM certificate
        this one renews: named in the order (RFC 9773 `replaces`) when the CA offers ARI.
        `solver` answers the challenges (default: HTTP-01 through the challenge store).

        `journal` is told of the order as soon as it is placed, before anything can finalise
        it. `resume`, an order a journal saved, is carried on when it still can give a
        certificate for `names` with this account; otherwise a new order is placed."""
        solver = solver or Http01Solver(self.challenges)
        wanted = _normalised(names, solver.validates_wildcards)
        what = wanted[0] if len(wanted) == 1 else f"{wanted[0]} (+{len(wanted) - 1} names)"
        if deadline <= 0:
            raise ValueError("the deadline must be a positive number of seconds")
        started = time.monotonic()
        exchange = Exchange(what, deadline, self.timeout, self.on_request)

        session = _Session(self, exchange)
        succeeded = False
        try:
            with session.step("account"):
                session.connect()
            resumed = session.resume(resume, wanted) if resume is not None else None
            if resumed is not None:
                order, key_pem = resumed
            else:
                key_pem = private_key_pem(generate_private_key(KeyAlgorithm(key_algorithm)))
                order = session.new_order(make_csr(key_pem, wanted), wanted, _replaces(replacing))
                if journal is not None:
                    # Outside any step: the journal's own error (the cache is down) stops here.
                    journal.placed(session.placed(order, wanted, key_pem))
            if order.body.status == messages.STATUS_PENDING:
                session.authorize(order, solver)
            fullchain = session.finalize(order)
            succeeded = True
        finally:
            # Only a connection that just worked is kept: after a failure (the CA, the network,
            # the deadline) the next issuance starts afresh.
            session.close(keep=succeeded)

        _check_certificate(fullchain, key_pem, wanted, what)
        log.info(
            "issued a certificate for %s (%s%s) in %.0f ms",
            what,
            key_algorithm,
            ", a resumed order" if resumed is not None else "",
            (time.monotonic() - started) * 1000,
        )
        return IssuedCertificate(fullchain_pem=fullchain, private_key_pem=key_pem)

    def renewal_info(
        self,
        certificate_pem: bytes,
        deadline: float = ari.DEFAULT_DEADLINE_SECONDS,
        min_ask_again_seconds: float = ari.DEFAULT_MIN_ASK_AGAIN_SECONDS,
        max_ask_again_seconds: float = ari.DEFAULT_MAX_ASK_AGAIN_SECONDS,
    ) -> ari.RenewalInfo | None:
        """The CA's suggested renewal window for this certificate (RFC 9773); None when the
        CA offers none or it could not be had (advisory: logged, never raised)."""
        return self._ari.fetch(
            certificate_pem,
            deadline=deadline,
            min_ask_again_seconds=min_ask_again_seconds,
            max_ask_again_seconds=max_ask_again_seconds,
        )

    def _take_connection(self) -> _Connection | None:
        """A kept connection, if one is idle; one whose directory is old is closed instead."""
        while (connection := self._connections.take()) is not None:
            if self._monotonic() - connection.opened <= DIRECTORY_MAX_AGE_SECONDS:
                return connection
            connection.close()
        return None

    def _keep_connection(self, connection: _Connection) -> None:
        self._connections.give(connection)


@dataclass
class _Connection:
    """What an issuance leaves for the next one: the library's network (its requests Session
    with the kept-alive TLS connection, the account's key and URL, the nonces the CA sent
    along), the client with the directory, and the adapter that carries each issuance's
    Exchange (deadline, hook). Used by one issuance at a time."""

    net: ClientNetwork
    client: ClientV2
    adapter: DeadlineAdapter
    key: jwk.JWK
    opened: float  # monotonic: when the directory was fetched
    key_json: str = field(default="", repr=False)  # the key as stored (private)

    def holds(self, stored: StoredAccount) -> bool:
        """Whether it speaks as the stored account (same key, same account URL)."""
        account = self.net.account
        return (
            account is not None
            and account.uri == stored.account_url
            and bool(self.key_json)
            and self.key_json == stored.key_json
        )

    def close(self) -> None:
        self.net.session.close()


class _NewOrderReplacing(messages.NewOrder):
    """newOrder with RFC 9773's `replaces`, which the acme library's own new_order lacks; it
    is still signed by the library (ClientNetwork.post)."""

    replaces: str | None = json_field("replaces", omitempty=True)


class _Session:
    """One issuance's conversation with the CA (not shared between threads)."""

    def __init__(self, issuer: AcmeIssuer, exchange: Exchange) -> None:
        self.issuer = issuer
        self.exchange = exchange
        self.net: ClientNetwork | None = None
        self.client: ClientV2 | None = None
        self.account_key: jwk.JWK | None = None
        self.connection: _Connection | None = None

    @contextmanager
    def step(self, operation: str) -> Iterator[None]:
        """Names the requests inside (hook, messages) and turns whatever the libraries raise
        into an AcmeError that says where it happened."""
        exchange = self.exchange
        exchange.operation = operation
        try:
            yield
        except AcmeError:
            raise
        except Exception as error:
            raise translate(
                error,
                exchange.what,
                exchange.operation,  # may be more precise than `operation` by now
                status=exchange.last_status,
                retry_after=exchange.last_retry_after,
                deadline_passed=exchange.remaining() <= 0.05,
            ) from error

    def close(self, keep: bool = False) -> None:
        connection = self.connection
        if connection is None:
            if self.net is not None:
                self.net.session.close()
            return
        if keep:
            self.issuer._keep_connection(connection)
        else:
            connection.close()

    # --- account ---------------------------------------------------------------------------

    def connect(self) -> None:
        """Sets up the account: the stored one, else a new one; over a kept connection when
        it has that very account (the store is the truth: a key or URL saved meanwhile makes
        a new connection), else a new one, which fetches the directory. The lock only covers
        first registrations, so concurrent first issuances share one account."""
        issuer = self.issuer
        stored = issuer.account_store.load(issuer.account)
        kept = issuer._take_connection()
        if kept is not None and stored is not None and kept.holds(stored):
            # Its requests now run under this issuance's deadline and names.
            kept.adapter.exchange = self.exchange
            self.connection = kept
            self.net, self.client, self.account_key = kept.net, kept.client, kept.key
            return
        if kept is not None:
            kept.close()
        if stored is None:
            with issuer._account_lock:
                stored = issuer.account_store.load(issuer.account)
                if stored is None:
                    self._open(new_account_key(), jwa.ES256)
                    self._register()
                    return
        key, alg = account_key_from_json(stored.key_json)
        net = self._open(key, alg)
        assert self.connection is not None
        self.connection.key_json = stored.key_json
        # No request: a stored account is trusted until the CA says it does not know it.
        net.account = messages.RegistrationResource(
            uri=stored.account_url, body=messages.Registration()
        )

    def _open(self, key: jwk.JWK, alg: jwa.JWASignature) -> ClientNetwork:
        issuer = self.issuer
        net = ClientNetwork(
            key,
            alg=alg,
            # requests takes a CA file path where the library's annotation says bool.
            verify_ssl=issuer.ca_bundle or True,  # type: ignore[arg-type]
            user_agent=issuer.user_agent,
        )
        # Replaces the library's adapter: per-request timeouts come from the deadline.
        adapter = DeadlineAdapter(self.exchange)
        net.session.mount("https://", adapter)
        net.session.mount("http://", adapter)
        self.net, self.account_key = net, key
        self.exchange.operation = "directory"
        self.client = ClientV2(ClientV2.get_directory(issuer.directory_url, net), net)
        self.connection = _Connection(net, self.client, adapter, key, issuer._monotonic())
        return net

    def _register(self) -> None:
        """newAccount with our key; saved before anything else can fail. Also re-registers a
        stored key the CA forgot (pebble restarted): same key, new account URL."""
        issuer, client, key = self.issuer, self._client(), self.account_key
        assert key is not None
        eab = issuer.external_account_binding
        if eab is None and client.external_account_required():
            raise _binding_required(issuer.directory_url)
        binding = None
        if eab is not None:
            binding = messages.ExternalAccountBinding.from_data(
                account_public_key=key.public_key(),
                kid=eab.kid,
                hmac_key=eab.hmac_key_b64url,
                directory=client.directory,
            )
        registration = messages.NewRegistration.from_data(
            email=issuer.email,
            terms_of_service_agreed=True,
            external_account_binding=binding,
        )
        self.exchange.operation = "new-account"
        client.net.account = None  # newAccount is signed with the key itself, not a kid
        try:
            account_url = client.new_account(registration).uri
        except messages.Error as problem:
            if problem.code == "externalAccountRequired" and eab is None:
                raise _binding_required(issuer.directory_url) from None
            if eab is not None and problem.code in _BINDING_REFUSALS:
                raise ExternalAccountBindingError(
                    f"ACME CA {issuer.directory_url} refused the external account binding "
                    f"of key id {eab.kid!r}: {describe_problem(problem)}; check "
                    "spec.acme.externalAccountBinding and its Secret against the CA's console"
                ) from None
            raise
        except acme_errors.ConflictError as existing:
            # The CA already knows this key (RFC 8555 7.3.1): its account URL is the answer.
            account_url = existing.location
            client.net.account = messages.RegistrationResource(
                uri=account_url, body=messages.Registration()
            )
        saved = StoredAccount(key_json=account_key_to_json(key), account_url=account_url)
        issuer.account_store.save(issuer.account, saved)
        if self.connection is not None:
            self.connection.key_json = saved.key_json
        log.info("registered ACME account %s at %s", account_url, issuer.directory_url)

    # --- order -----------------------------------------------------------------------------

    def new_order(
        self, csr_pem: bytes, names: Sequence[str], replaces: str | None
    ) -> messages.OrderResource:
        try:
            with self.step("new-order"):
                return self._new_order(csr_pem, names, replaces)
        except AcmeRejectedError as refused:
            if not _account_unknown(refused):
                raise
        log.warning(
            "ACME CA %s does not know the stored account; registering its key again",
            self.issuer.directory_url,
        )
        with self.step("new-account"), self.issuer._account_lock:
            self._register()
        with self.step("new-order"):
            return self._new_order(csr_pem, names, replaces)

    def _new_order(
        self, csr_pem: bytes, names: Sequence[str], replaces: str | None
    ) -> messages.OrderResource:
        client = self._client()
        if replaces is None or "renewalInfo" not in client.directory.to_partial_json():
            return client.new_order(csr_pem)
        try:
            return self._new_order_replacing(csr_pem, names, replaces)
        except acme_errors.ConflictError:
            # HTTP 409, which the library raises without its problem: RFC 9773's
            # alreadyReplaced (an earlier renewal of it was ordered, e.g. before a crash).
            refusal = "HTTP 409: already replaced"
        except messages.Error as problem:
            if problem.code in ("rateLimited", "accountDoesNotExist"):
                raise
            refusal = describe_problem(problem)
        # The CA may not know the old certificate (another account, a CA restart) or it was
        # replaced already: `replaces` is a courtesy, the renewal itself is not.
        log.warning(
            "ACME CA %s refused the order as a replacement of %s (%s); ordering without it",
            self.issuer.directory_url,
            replaces,
            refusal,
        )
        return client.new_order(csr_pem)

    def _new_order_replacing(
        self, csr_pem: bytes, names: Sequence[str], replaces: str
    ) -> messages.OrderResource:
        client = self._client()
        order = _NewOrderReplacing(
            identifiers=[
                messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=name) for name in names
            ],
            replaces=replaces,
        )
        response: requests.Response = client.net.post(
            client.directory["newOrder"], order, new_nonce_url=client.directory["newNonce"]
        )
        body = messages.Order.from_json(response.json())
        authorizations = []
        for url in body.authorizations:
            fetched = self._post_as_get(url)
            authorizations.append(
                messages.AuthorizationResource(
                    body=messages.Authorization.from_json(fetched.json()),
                    uri=fetched.headers.get("Location", url),
                )
            )
        log.info("ordered a replacement of %s", replaces)
        return messages.OrderResource(
            body=body,
            uri=response.headers.get("Location"),
            authorizations=authorizations,
            csr_pem=csr_pem,
        )

    def placed(
        self, order: messages.OrderResource, names: Sequence[str], key_pem: bytes
    ) -> PlacedOrder:
        net = self._client().net
        if not order.uri or net.account is None:
            raise AcmeError(f"ACME CA gave no URL for the order of {self.exchange.what}")
        return PlacedOrder(
            self.issuer.directory_url, net.account.uri, order.uri, tuple(names), key_pem
        )

    def resume(
        self, saved: PlacedOrder, names: Sequence[str]
    ) -> tuple[messages.OrderResource, bytes] | None:
        """The saved order, fetched again, with its key; None when it cannot give the
        certificate wanted any more (another CA, account or names; invalid, expired, or
        unknown to the CA), so a new order is placed. An outage raises: the order is kept."""
        net = self._client().net
        account = net.account.uri if net.account is not None else None
        if (saved.directory_url, saved.account_url) != (self.issuer.directory_url, account):
            self._abandon(saved, "it belongs to another ACME account")
            return None
        if sorted(saved.names) != sorted(names):
            self._abandon(saved, "it is for other names")
            return None
        try:
            csr_pem = make_csr(saved.private_key_pem, list(names))
        except (ValueError, TypeError):  # a saved key that does not load (edited, truncated)
            self._abandon(saved, "its saved private key is not usable")
            return None
        try:
            with self.step("resume-order"):
                response = self._post_as_get(saved.order_url)
                body = messages.Order.from_json(response.json())
        except AcmeRejectedError as refused:  # 404, unauthorized, malformed: gone for us
            self._abandon(saved, str(refused))
            return None
        if body.status not in (
            messages.STATUS_PENDING,
            messages.STATUS_READY,
            messages.STATUS_PROCESSING,
            messages.STATUS_VALID,
        ):
            self._abandon(saved, f"it is {body.status.name}")
            return None
        authorizations = []
        if body.status == messages.STATUS_PENDING:
            for url in body.authorizations:
                with self.step("resume-authorization"):
                    fetched = self._post_as_get(url)
                authorizations.append(
                    messages.AuthorizationResource(
                        body=messages.Authorization.from_json(fetched.json()), uri=url
                    )
                )
        log.info(
            "resuming the ACME order %s for %s (%s)",
            saved.order_url,
            self.exchange.what,
            body.status.name,
        )
        order = messages.OrderResource(
            body=body,
            uri=saved.order_url,
            authorizations=authorizations,
            csr_pem=csr_pem,
        )
        return order, saved.private_key_pem

    def _abandon(self, saved: PlacedOrder, why: str) -> None:
        log.warning(
            "not resuming the ACME order %s for %s: %s; placing a new one",
            saved.order_url,
            self.exchange.what,
            why,
        )

    def authorize(self, order: messages.OrderResource, solver: ChallengeSolver) -> None:
        """Answers the solver's challenge for every authorization that is not valid yet and
        waits for them; the solver takes its answers back whatever happens."""
        key = self.account_key
        assert key is not None
        client = self._client()
        answers: list[
            tuple[
                messages.AuthorizationResource, messages.ChallengeBody, challenges.ChallengeResponse
            ]
        ] = []
        pending: list[PendingChallenge] = []
        try:
            for authorization in order.authorizations:
                body = authorization.body
                if body.status == messages.STATUS_VALID:
                    continue  # reused from an earlier order: nothing to prove
                if body.status != messages.STATUS_PENDING:
                    raise challenge_failed(body)
                challenge = _challenge(authorization, solver.challenge_type)
                response, validation = challenge.chall.response_and_validation(key)
                pending.append(
                    PendingChallenge(
                        body.identifier.value, challenge.chall.encode("token"), validation
                    )
                )
                answers.append((authorization, challenge, response))
            # Every answer is up (and visible) before the CA is told to look for any of them.
            with self.step("present-challenges"):
                solver.present(pending, self.exchange.deadline)
            for _, challenge, response in answers:
                with self.step("answer-challenge"):
                    client.answer_challenge(challenge, response)
            for authorization, _, _ in answers:
                self._wait_for_authorization(authorization)
        finally:
            solver.cleanup(pending)

    def _wait_for_authorization(self, authorization: messages.AuthorizationResource) -> None:
        client, backoff = self._client(), Backoff()
        retry_after: float | None = None
        while True:
            with self.step("poll-authorization"):
                self.exchange.sleep(backoff.next_wait(retry_after))
                authorization, response = client.poll(authorization)
            status = authorization.body.status
            if status == messages.STATUS_VALID:
                return
            if status != messages.STATUS_PENDING:
                raise challenge_failed(authorization.body)
            retry_after = parse_retry_after(response.headers.get("Retry-After"))

    def finalize(self, order: messages.OrderResource) -> bytes:
        """Sends the CSR, polls the order until the certificate is ready, downloads it."""
        client, backoff = self._client(), Backoff()
        retry_after: float | None = None
        # A resumed order already processing was finalised before the crash.
        finalized = order.body.status == messages.STATUS_PROCESSING
        # The order body is from before the authorizations turned valid: try to finalize
        # right away instead of polling first; `orderNotReady` just means "poll".
        stale = True
        while True:
            status = order.body.status
            if status == messages.STATUS_VALID and order.body.certificate:
                with self.step("download-certificate"):
                    chain = self._post_as_get(order.body.certificate)
                return chain.content
            if status == messages.STATUS_INVALID:
                problem = order.body.error
                detail = describe_problem(problem) if problem else "the CA gave no reason"
                raise AcmeRejectedError(
                    f"ACME order for {self.exchange.what} turned invalid: {detail}"
                )
            if not finalized and (stale or status == messages.STATUS_READY):
                stale = False
                with self.step("finalize"):
                    try:
                        order = client.begin_finalization(order)
                        finalized = True
                        retry_after = parse_retry_after(self.exchange.last_retry_after)
                        continue
                    except messages.Error as problem:
                        if problem.code != "orderNotReady":
                            raise
            # pending (authorizations settling) or processing (the CA is signing)
            with self.step("poll-order"):
                self.exchange.sleep(backoff.next_wait(retry_after))
                response = self._post_as_get(order.uri)
                order = order.update(body=messages.Order.from_json(response.json()))
            retry_after = parse_retry_after(response.headers.get("Retry-After"))

    # --- helpers ---------------------------------------------------------------------------

    def _client(self) -> ClientV2:
        assert self.client is not None, "connect() first"
        return self.client

    def _post_as_get(self, url: str) -> requests.Response:
        # RFC 8555 6.3 POST-as-GET through the library's public signing `post`.
        client = self._client()
        response: requests.Response = client.net.post(
            url, None, new_nonce_url=client.directory["newNonce"]
        )
        return response


def _replaces(certificate_pem: bytes | None) -> str | None:
    """The ARI identifier of the certificate a renewal replaces; None if there is none."""
    if not certificate_pem:
        return None
    try:
        return ari.certificate_identifier(x509.load_pem_x509_certificate(certificate_pem))
    except ValueError:
        return None


def _normalised(names: Sequence[str], wildcards_allowed: bool) -> list[str]:
    if isinstance(names, str):
        names = [names]
    wanted: list[str] = []
    for name in names:
        clean = name.strip().rstrip(".").lower()
        if clean and clean not in wanted:
            wanted.append(clean)
    if not wanted:
        raise ValueError("no names to issue a certificate for")
    wildcards = [name for name in wanted if name.startswith("*.")]
    if wildcards and not wildcards_allowed:
        raise AcmeRejectedError(
            f"{wildcards[0]}: a wildcard name can only be validated with DNS-01, not HTTP-01"
        )
    return wanted


def _challenge(
    authorization: messages.AuthorizationResource,
    kind: type[challenges.KeyAuthorizationChallenge],
) -> messages.ChallengeBody:
    for challenge in authorization.body.challenges:
        if isinstance(challenge.chall, kind):
            return challenge
    offered = ", ".join(sorted(str(c.chall.typ) for c in authorization.body.challenges))
    raise AcmeRejectedError(
        f"ACME CA offers no {kind.typ.upper()} challenge for "
        f"{authorization.body.identifier.value} (offered: {offered or 'none'})"
    )


# What a CA answers a newAccount whose binding it does not accept (RFC 8555 7.3.4, pebble).
_BINDING_REFUSALS = frozenset({"unauthorized", "malformed", "externalAccountRequired"})


def _binding_required(directory_url: str) -> ExternalAccountBindingRequiredError:
    return ExternalAccountBindingRequiredError(
        f"ACME CA {directory_url} registers accounts only with External Account Binding: set "
        "spec.acme.externalAccountBinding (keyID, and hmacKeySecretRef naming a Secret in "
        "this namespace with the HMAC key) to the credentials from the CA's console"
    )


def _account_unknown(error: AcmeRejectedError) -> bool:
    cause = error.__cause__
    return isinstance(cause, messages.Error) and cause.code == "accountDoesNotExist"


def _check_certificate(fullchain: bytes, key_pem: bytes, names: list[str], what: str) -> None:
    """The leaf must carry our public key and every name: a CA bug here would break
    handshakes on the whole fleet."""
    try:
        leaf = x509.load_pem_x509_certificate(fullchain)
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        raise AcmeError(f"ACME CA returned no usable certificate for {what}") from None
    private = serialization.load_pem_private_key(key_pem, password=None)
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if leaf.public_key().public_bytes(*spki) != private.public_key().public_bytes(*spki):
        raise AcmeError(f"ACME CA returned a certificate for another key for {what}")
    covered = {name.lower() for name in san.get_values_for_type(x509.DNSName)}
    missing = [name for name in names if name not in covered]
    if missing:
        raise AcmeError(f"ACME CA returned a certificate without {', '.join(missing)}")
