"""The two baselines of apply -> Ready, on the same pebble as the operator: the protocol floor
(acme's primitives, nothing else: one order, the challenge answered, 20 ms polls, finalize,
download) and the acme library's own poll_and_finalize (fixed 1 s sleeps)."""

from __future__ import annotations

import secrets
import time
from datetime import datetime, timedelta

from acme import challenges, client, crypto_util, messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from josepy import jwa, jwk

from certfleet.acme_issuer.http01 import ChallengeStore
from testbed.acme_ca import AcmeCA

POLL_SECONDS = 0.02
DEADLINE_SECONDS = 60.0


def bench_domain() -> str:
    return f"floor-{secrets.token_hex(4)}.certfleet.test"


class AcmeBaselines:
    """One registered account (not timed), then orders the two ways."""

    def __init__(self, ca: AcmeCA, store: ChallengeStore) -> None:
        self.store = store
        self.account_key = jwk.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
        network = client.ClientNetwork(
            self.account_key,
            alg=jwa.ES256,
            verify_ssl=str(ca.listener_ca_bundle),  # type: ignore[arg-type]
            user_agent="certfleet-bench",
        )
        directory = client.ClientV2.get_directory(ca.directory_url, network)
        self.acme = client.ClientV2(directory, network)
        self.acme.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))

    def _order(self) -> messages.OrderResource:
        key_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        order = self.acme.new_order(crypto_util.make_csr(key_pem, [bench_domain()]))
        for authorization in order.authorizations:
            http01 = next(
                c for c in authorization.body.challenges if isinstance(c.chall, challenges.HTTP01)
            )
            response, validation = http01.response_and_validation(self.account_key)
            self.store.put(http01.chall.encode("token"), validation)
            self.acme.answer_challenge(http01, response)
        return order

    def floor(self) -> bytes:
        """The protocol floor: every request the protocol needs, polls 20 ms apart."""
        deadline = time.monotonic() + DEADLINE_SECONDS
        order = self._order()
        for authorization in order.authorizations:
            while True:
                polled, _ = self.acme.poll(authorization)
                if polled.body.status == messages.STATUS_VALID:
                    break
                if polled.body.status == messages.STATUS_INVALID or time.monotonic() > deadline:
                    raise RuntimeError(f"authorization {polled.body.status}")
                time.sleep(POLL_SECONDS)
        order = self.acme.begin_finalization(order)
        while True:
            body = messages.Order.from_json(self.acme._post_as_get(order.uri).json())
            if body.status == messages.STATUS_VALID and body.certificate:
                return bytes(self.acme._post_as_get(body.certificate).content)
            if body.status == messages.STATUS_INVALID or time.monotonic() > deadline:
                raise RuntimeError(f"order {body.status}")
            time.sleep(POLL_SECONDS)

    def poll_and_finalize(self) -> bytes:
        """The acme library's own way, with its fixed 1 s sleeps."""
        order = self._order()
        done = self.acme.poll_and_finalize(
            order, datetime.now() + timedelta(seconds=DEADLINE_SECONDS)
        )
        return done.fullchain_pem.encode()
