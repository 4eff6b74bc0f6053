"""deploy/apache's and deploy/lighttpd's HTTP-01 snippets on the real servers: a token request
reaches the real certfleet HTTP-01 responder, anything else under the challenge path is
refused by the webserver itself, and the site's own rules keep the rest. (The nginx snippet's
twin test is in test_deploy.py.)"""

from __future__ import annotations

import http.client
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from certfleet.acme_issuer import ChallengeStore, Http01Server
from testbed.certfleet_install import REPO
from testbed.pki import TestCA
from testbed.webserver import Apache, Lighttpd

pytestmark = pytest.mark.testbed

RESPONDER_LOG = "certfleet.acme_issuer.http01"
TOKEN = "dGhpcy1pcy1hLXRva2VuLW9mLXRlc3Rz"
CHALLENGE = "/.well-known/acme-challenge/"
HOST = "www.example.test"
# What cannot be a token: a dot, an encoded slash, too long, nothing at all.
NOT_TOKENS = ("a.b", "a%2Fb", "x" * 129, "")


@pytest.fixture
def responder(caplog: pytest.LogCaptureFixture) -> Iterator[Http01Server]:
    """The operator's real HTTP-01 responder, holding one token."""
    store = ChallengeStore()
    store.put(TOKEN, f"{TOKEN}.key-thumbprint")
    caplog.set_level(logging.DEBUG, logger=RESPONDER_LOG)
    with Http01Server(store, "127.0.0.1", 0) as server:
        yield server


def answered(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The responder's log: one line per request it answered."""
    return [r.getMessage() for r in caplog.records if r.name == RESPONDER_LOG]


def http_get(port: int, path: str) -> tuple[int, str, str | None]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path, headers={"Host": HOST})
        response = connection.getresponse()
        return (
            response.status,
            response.read().decode(errors="replace"),
            response.getheader("Location"),
        )
    finally:
        connection.close()


def assert_snippet_forwards_only_tokens(
    port: int, caplog: pytest.LogCaptureFixture, refused: int
) -> None:
    caplog.clear()
    status, body, _ = http_get(port, CHALLENGE + TOKEN)
    assert (status, body) == (200, f"{TOKEN}.key-thumbprint")
    assert answered(caplog) == [f"http-01 GET {TOKEN[:8]}...: 200"]
    # A token the responder does not hold: its 404, not the site's rules.
    assert http_get(port, CHALLENGE + TOKEN[:-4] + "AAAA")[:2] == (404, "not found\n")
    for odd in NOT_TOKENS:
        assert http_get(port, CHALLENGE + odd)[0] == refused, odd
    assert len(answered(caplog)) == 2, answered(caplog)  # the good token and the unknown one


def snippet(name: str, responder: Http01Server, tmp_path: Path, old: str, new: str) -> Path:
    """The shipped snippet with its one placeholder address pointed at the test's responder."""
    text = (REPO / "deploy" / name / "certfleet-acme-challenge.conf").read_text()
    assert text.count(old) == 1, f"deploy/{name}'s snippet no longer has {old!r}"
    path = tmp_path / f"{name}-certfleet-acme-challenge.conf"
    path.write_text(text.replace(old, new.format(port=responder.port)))
    return path


# A site around the snippet: dotfiles denied before it, everything else redirected after it.
APACHE_SITE = """\
    ServerName www.example.test
    <LocationMatch "/\\.">
        Require all denied
    </LocationMatch>
    Include {snippet}
    Redirect permanent / https://www.example.test/"""


def test_apache_snippet_proxies_challenges_to_the_solver(
    tmp_path: Path,
    responder: Http01Server,
    start_apache: Callable[..., Apache],
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = snippet(
        "apache",
        responder,
        tmp_path,
        "http://certfleet-acme-solver.certfleet-system.svc/",
        "http://127.0.0.1:{port}/",
    )
    apache = start_apache(tmp_path / "none", [], http_site=APACHE_SITE.format(snippet=path))
    assert_snippet_forwards_only_tokens(apache.http_port, caplog, refused=404)
    # Everything else still follows the site's own rules.
    status, _, location = http_get(apache.http_port, "/index.html")
    assert (status, location) == (301, "https://www.example.test/index.html")


LIGHTTPD_SITE = """\
include "{snippet}"
$HTTP["url"] !~ "^/\\.well-known/" {{
    url.redirect = ("^/(.*)" => "https://www.example.test/$1")
}}
server.modules += ("mod_redirect")"""


def test_lighttpd_snippet_proxies_challenges_to_the_solver(
    tmp_path: Path,
    responder: Http01Server,
    start_lighttpd: Callable[..., Lighttpd],
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = snippet(
        "lighttpd",
        responder,
        tmp_path,
        '"host" => "192.0.2.10", "port" => 30089',
        '"host" => "127.0.0.1", "port" => {port}',
    )
    root = tmp_path / "live"
    placeholder = root / "placeholder.test"
    _placeholder_pair(placeholder)
    lighttpd = start_lighttpd(
        root, ["placeholder.test"], http_site=LIGHTTPD_SITE.format(snippet=path)
    )
    assert_snippet_forwards_only_tokens(lighttpd.http_port, caplog, refused=403)
    status, _, location = http_get(lighttpd.http_port, "/index.html")
    assert (status, location) == (301, "https://www.example.test/index.html")


def _placeholder_pair(folder: Path) -> None:
    """lighttpd's TLS listener needs some pair to start."""
    pair = TestCA(folder.parent / "ca", "placeholder").serving_pair("placeholder.test")
    folder.mkdir(parents=True)
    (folder / "fullchain.pem").write_bytes(pair.cert.read_bytes())
    (folder / "privkey.pem").write_bytes(pair.key.read_bytes())
