"""Benchmark: certificates per second from pebble, certfleet's AcmeIssuer against the acme
library's own poll_and_finalize (the baseline), in the same run on the same servers.

    PYTHONPATH=tests .venv/bin/python bench/acme_issuance.py [--rounds N]

Prints each median and the ratio. DESIGN.md's expectation: poll_and_finalize sleeps a fixed
1 s between polls; polling with Retry-After gets a certificate from pebble in tens of ms.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from acme import challenges, client, crypto_util, messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from josepy import jwa, jwk

from certfleet.acme_issuer.accounts import InMemoryAccountStore
from certfleet.acme_issuer.http01 import ChallengeStore, Http01Server
from certfleet.acme_issuer.issuer import AcmeIssuer
from testbed.acme_ca import AcmeCA
from testbed.webserver import Nginx


def _name() -> str:
    return f"bench-{secrets.token_hex(4)}.certfleet.test"


def baseline_client(ca: AcmeCA) -> tuple[client.ClientV2, jwk.JWKEC]:
    """The acme library's client with a registered account (setup, not timed)."""
    account_key = jwk.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    network = client.ClientNetwork(
        account_key,
        alg=jwa.ES256,
        verify_ssl=str(ca.listener_ca_bundle),  # type: ignore[arg-type]
    )
    acme = client.ClientV2(client.ClientV2.get_directory(ca.directory_url, network), network)
    acme.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))
    return acme, account_key


def baseline_issue(acme: client.ClientV2, account_key: jwk.JWKEC, store: ChallengeStore) -> None:
    """The acme library's own way: poll_and_finalize, with its fixed 1 s sleeps."""
    key_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    order = acme.new_order(crypto_util.make_csr(key_pem, [_name()]))
    for authorization in order.authorizations:
        http01 = next(
            c for c in authorization.body.challenges if isinstance(c.chall, challenges.HTTP01)
        )
        response, validation = http01.response_and_validation(account_key)
        store.put(http01.chall.encode("token"), validation)
        acme.answer_challenge(http01, response)
    acme.poll_and_finalize(order, datetime.now() + timedelta(seconds=60))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="certfleet-bench-"))
    store = ChallengeStore()
    with (
        Http01Server(store, "127.0.0.1", 0) as responder,
        AcmeCA(workdir / "acme") as ca,
        Nginx(
            workdir / "nginx",
            workdir / "nginx" / "ssl",
            http_port=ca.http_port,
            challenge_proxy=f"http://127.0.0.1:{responder.port}",
        ),
    ):
        issuer = AcmeIssuer(
            ca.directory_url, InMemoryAccountStore(), store, ca_bundle=str(ca.listener_ca_bundle)
        )
        issuer.issue([_name()], deadline=30)  # registers the account: not timed
        acme, account_key = baseline_client(ca)
        ours, theirs = [], []
        for _ in range(args.rounds):  # interleaved, so both see the same machine load
            started = time.perf_counter()
            issuer.issue([_name()], deadline=30)
            ours.append(time.perf_counter() - started)
            started = time.perf_counter()
            baseline_issue(acme, account_key, store)
            theirs.append(time.perf_counter() - started)
    mine, base = statistics.median(ours), statistics.median(theirs)
    print(f"AcmeIssuer:        median {mine * 1000:7.1f} ms  (min {min(ours) * 1000:.1f})")
    print(f"poll_and_finalize: median {base * 1000:7.1f} ms  (min {min(theirs) * 1000:.1f})")
    print(f"ratio (baseline / AcmeIssuer): {base / mine:.1f}x over {args.rounds} rounds")


if __name__ == "__main__":
    main()
