"""No secret in any output of a full run: issuance, renewals, a MANUAL certificate, a refused
one, `certfleet operator --verbose` and a `certfleet agent --verbose` beside a real nginx. Then
every log, event, status, metric scrape and S3 object is searched for every private key of the
run (PEM, base64 of the PEM as Secrets hold it, DER and its base64, the raw private number),
the master key, the S3 secret key and the ACME account key; none may be found, and S3 holds
private keys only encrypted."""

from __future__ import annotations

import base64
import json
import shlex
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from certfleet.api.names import ACCOUNT_KEY, ACCOUNT_LABEL
from certfleet.api.spec import cache_secret_name, parse_certificate_spec
from certfleet.datastore.encryption import MasterKey, envelope_decrypt
from e2e.fleet import Fleet, new_domain
from testbed.certfleet_install import OPERATOR_NAMESPACE
from testbed.processes import ServerProcess, free_port
from testbed.waiting import wait_for
from testbed.webserver import Nginx

pytestmark = pytest.mark.testbed


# -- what must never be seen --------------------------------------------------------------


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def private_key_needles(pem: bytes) -> dict[str, bytes]:
    """Forms in which a private key could leak, each distinctive of this one key."""
    key = serialization.load_pem_private_key(pem, password=None)
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    if isinstance(key, ec.EllipticCurvePrivateKey):
        number = key.private_numbers().private_value
    else:
        assert isinstance(key, rsa.RSAPrivateKey)
        number = key.private_numbers().d
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    body = b"".join(line for line in pem.splitlines() if not line.startswith(b"-----"))
    needles = {
        "the raw private number": raw,
        "the private number in hex": raw.hex().encode(),
        "the private number in base64url (JWK)": base64.urlsafe_b64encode(raw).rstrip(b"="),
        "the private number in base64": _b64(raw).rstrip(b"="),
        # A middle window: the start of every PEM and DER is the same for all keys.
        "the PEM body": body[len(body) // 3 : len(body) // 3 + 40],
        "the DER": der[len(der) // 3 : len(der) // 3 + 24],
        "the base64 of the DER": _b64(der)[len(_b64(der)) // 3 :][:40],
        "the base64 of the PEM (a Secret's data)": _b64(pem)[len(_b64(pem)) // 3 :][:40],
    }
    return needles


def secret_needles(name: str, value: bytes) -> dict[str, bytes]:
    return {
        f"{name}": value,
        f"{name} in hex": value.hex().encode(),
        f"{name} in base64": _b64(value).rstrip(b"="),
    }


# -- the run --------------------------------------------------------------------------------


def _kubectl_json(fleet: Fleet, *args: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(
        fleet.install.control_plane.kubectl(*args, "-o", "json").stdout
    )
    return found


def start_agent(
    fleet: Fleet, domain: str, roots: Path, start_nginx: Callable[..., Nginx], workdir: Path
) -> tuple[ServerProcess, int, list[bytes]]:
    """An agent as a node runs it (--verbose): the init step, nginx, then the loop. Returns the
    loop's process, its metrics port and the init step's output."""
    secrets_dir = workdir / "agent-secrets"
    secrets_dir.mkdir(parents=True)
    endpoint = fleet.bucket.endpoint
    for name, value in (
        ("master.key", fleet.master_key),
        ("accessKeyID", endpoint.access_key.encode()),
        ("secretAccessKey", endpoint.secret_key.encode()),
    ):
        (secrets_dir / name).write_bytes(value)
    root = workdir / "agent-live"
    location = fleet.location(domain)
    metrics_port = free_port()
    flags = [
        f"--s3-endpoint={endpoint.url}",
        f"--s3-region={endpoint.region}",
        f"--s3-bucket={location.bucket}",
        f"--s3-prefix={location.prefix}",
        f"--access-key-id-file={secrets_dir / 'accessKeyID'}",
        f"--secret-access-key-file={secrets_dir / 'secretAccessKey'}",
        f"--master-key-file={secrets_dir / 'master.key'}",
        f"--cloudhost={location.cloudhost}",
        f"--build-identifier={location.build_identifier}",
        f"--domain={domain}",
        f"--cert-root={root}",
        "--node-name=node-leaks",
        "--poll-interval=0.5",
        "--max-backoff=2",
        "--metrics-address=127.0.0.1",
        f"--trust-bundle={roots}",  # pebble's root: no public one
        "--verbose",
    ]
    agent = [sys.executable, "-m", "certfleet.cli", "agent"]
    init = subprocess.run(
        [*agent, *flags, "--metrics-port=0", "--once", "--no-reload"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert init.returncode == 0, init.stderr
    nginx = start_nginx(certificate_dir=root / domain)
    loop = ServerProcess(
        "agent-leaks",
        [
            *agent,
            *flags,
            f"--metrics-port={metrics_port}",
            "--webserver=nginx",
            f"--test-command={shlex.join(nginx.test_command)}",
            f"--reload-command={shlex.join(nginx.reload_command)}",
            f"--probe-address={nginx.address}:{nginx.https_port}",
            f"--probe-ca-file={roots}",
        ],
        workdir / "agent-leaks.log",
    )
    return loop, metrics_port, [init.stdout, init.stderr]


def _scrape(port: int) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        body: bytes = response.read()
    return body


def _s3_objects(fleet: Fleet) -> Iterator[tuple[str, bytes]]:
    client = fleet.bucket.endpoint.client()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=fleet.bucket.name):
        for item in page.get("Contents", []):
            body = client.get_object(Bucket=fleet.bucket.name, Key=item["Key"])["Body"].read()
            yield item["Key"], body


def test_no_secret_reaches_any_log_event_status_metric_or_s3_object(
    start_fleet: Callable[..., Fleet], start_nginx: Callable[..., Nginx], tmp_path: Path
) -> None:
    # 15-second certificates renewed at 2/3 of their life (renewBeforeSeconds 60 is longer).
    fleet = start_fleet(
        acme={"certificate_validity_seconds": 15},
        operator_args=["--verbose", "--recheck-seconds=2"],
    )
    domain, manual_domain, broken_domain = new_domain(), new_domain(), new_domain()
    namespace = fleet.namespace

    # Issuance, then renewals.
    fleet.apply_certificate("automatic.yaml", "web", domain, renewBeforeSeconds=60)
    first = fleet.install.wait_for_condition(namespace, "web", "True", timeout=60)

    # An agent beside nginx installs each of them.
    roots = tmp_path / "pebble-roots.pem"
    roots.write_bytes(fleet.ca.issuing_roots_pem())
    agent, agent_metrics, init_output = start_agent(fleet, domain, roots, start_nginx, tmp_path)

    # MANUAL, accepted; and a refused one (the key of another certificate).
    manual_ca = fleet.manual_ca  # a CA the fleet's CloudHost trusts
    manual, stranger = manual_ca.leaf(manual_domain), manual_ca.leaf(broken_domain)
    wrong_key = manual_ca.leaf(broken_domain)
    fleet.install.apply_secret(
        namespace,
        "shop-tls",
        {"tls.crt": manual.fullchain, "tls.key": manual.key},
        type_="kubernetes.io/tls",
    )
    fleet.install.apply_secret(
        namespace,
        "broken-tls",
        {"tls.crt": stranger.fullchain, "tls.key": wrong_key.key},
        type_="kubernetes.io/tls",
    )
    fleet.apply_certificate("manual.yaml", "shop", manual_domain, manual={"secretName": "shop-tls"})
    fleet.apply_certificate(
        "manual.yaml", "broken", broken_domain, manual={"secretName": "broken-tls"}
    )
    fleet.wait_published(manual_domain, manual.fullchain)
    fleet.install.wait_for_condition(namespace, "broken", "False", "KeyMismatch")

    start = fleet.stored(domain)
    assert start is not None
    wait_for(
        "two renewals",
        lambda: (
            (stored := fleet.stored(domain)) is not None
            and stored.pointer.revision >= start.pointer.revision + 2
        ),
        timeout=60,
    )
    latest = fleet.stored(domain)
    assert latest is not None

    def agent_installed_latest() -> bool:
        return f"serial {latest.pointer.serial}".encode() in agent.log_path.read_bytes()

    wait_for("the agent to install the latest renewal", agent_installed_latest, timeout=30)
    del first

    # -- collect everything that was said or stored --------------------------------------
    scrapes = {
        "operator metrics": _scrape(fleet.install.metrics_port or 0),
        "agent metrics": _scrape(agent_metrics),
    }
    agent.stop()
    fleet.install.stop_operator()
    haystacks: dict[str, bytes] = dict(scrapes)
    for log in sorted(fleet.install.workdir.glob("operator-*.log")):
        haystacks[f"operator log {log.name}"] = log.read_bytes()
    haystacks["agent log"] = agent.log_path.read_bytes()
    haystacks["agent init output"] = b"\n".join(init_output)
    haystacks["events"] = json.dumps(_kubectl_json(fleet, "get", "events", "-A")).encode()
    haystacks["statuses"] = json.dumps(_kubectl_json(fleet, "get", "mcert", "-A")).encode()
    s3_objects = dict(_s3_objects(fleet))
    for key, body in s3_objects.items():
        haystacks[f"S3 object {key}"] = body

    # -- every secret of the run -----------------------------------------------------------
    master = MasterKey(fleet.master_key)
    issued: dict[str, bytes] = {}
    for key, body in s3_objects.items():
        if key.endswith("/privkey.pem.enc"):
            assert not body.startswith(b"-----"), f"{key} is not encrypted"
            issued[key] = envelope_decrypt(body, [master], key.encode())
    automatic_keys = [key for key in issued if f"/{domain}/" in key]
    assert len(automatic_keys) >= 3, "issuance and two renewals, each with its own key"
    accounts = _kubectl_json(
        fleet, "get", "secrets", "-n", OPERATOR_NAMESPACE, "-l", f"{ACCOUNT_LABEL}=true"
    )["items"]
    assert accounts, "the ACME account's Secret"

    needles: dict[str, bytes] = {}
    private_keys = {f"issued key {key}": pem for key, pem in issued.items()}
    private_keys.update({"the MANUAL key": manual.key, "the refused MANUAL key": wrong_key.key})
    for what, pem in private_keys.items():
        for form, needle in private_key_needles(pem).items():
            needles[f"{what}: {form}"] = needle
    for account in accounts:
        jwk = json.loads(base64.b64decode(account["data"][ACCOUNT_KEY]))
        # The private parts of the JWK (EC: d; RSA: d, p, q, dp, dq, qi), however nested.
        found = list(_private_jwk_values(jwk))
        assert found, "an account key with a private part"
        for value in found:
            needles[f"account key {account['metadata']['name']}"] = value.encode()
    needles.update(secret_needles("the master key", fleet.master_key))
    needles["the S3 secret key"] = fleet.bucket.endpoint.secret_key.encode()

    # The needles are well made: the cache Secret, which holds the latest key, has them.
    spec = parse_certificate_spec(fleet.install.managed_certificate(namespace, "web")["spec"])
    cache = json.dumps(
        _kubectl_json(fleet, "get", "secret", "-n", namespace, cache_secret_name(spec))
    )
    secret_form = "the base64 of the PEM (a Secret's data)"
    assert any(
        private_key_needles(pem)[secret_form] in cache.encode() for pem in issued.values()
    ), "the search would not find a key where one is"
    operator_logs = [haystack for where, haystack in haystacks.items() if "operator log" in where]
    assert any(b" DEBUG certfleet." in log for log in operator_logs), "--verbose said more"

    leaks = [
        f"{what} in {where}"
        for where, haystack in haystacks.items()
        for what, needle in needles.items()
        if len(needle) >= 16 and needle in haystack
    ]
    assert leaks == [], leaks[:20]
    # Not even a PEM private key header, in any output or S3 object.
    assert [where for where, haystack in haystacks.items() if b"PRIVATE KEY" in haystack] == []


def _private_jwk_values(document: Any) -> Iterator[str]:
    if isinstance(document, dict):
        for key, value in document.items():
            if key in ("d", "p", "q", "dp", "dq", "qi") and isinstance(value, str):
                yield value
            else:
                yield from _private_jwk_values(value)
    elif isinstance(document, list):
        for item in document:
            yield from _private_jwk_values(item)
    elif isinstance(document, str) and document.startswith("{"):
        try:
            yield from _private_jwk_values(json.loads(document))
        except ValueError:
            return
