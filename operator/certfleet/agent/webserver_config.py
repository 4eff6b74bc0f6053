"""Which webserver serves which certificate: `--webserver`, once per webserver on the node.

One webserver, the common case: `--webserver nginx`; it serves every `--domain`, and the flags
`--test-command`, `--reload-command`, `--webserver-pid-file` and `--probe-address` are its.

Several (a VM with an nginx for the site, an Apache for the auth server, a lighttpd for the
static files): repeat `--webserver`, each the kind and KEY=VALUE words, quoted as a shell
quotes them:

    --webserver 'nginx domains=www.example.com'
    --webserver 'apache2 domains=auth.example.com probe=127.0.0.1:8443'
    --webserver "lighttpd domains=static.example.com pid-file=/run/lighttpd.pid
                 test='lighttpd -tt -f /etc/lighttpd/lighttpd.conf'"

The keys: `domains` (every domain is served by exactly one webserver), `test`, `reload` and
`pid-file` (as the flags, which then may not be given: they would be ambiguous), `probe`
(default `--probe-address`). In CERTFLEET_WEBSERVER the webservers are separated by `;`.
A batch of changes tests and reloads each webserver whose certificates changed, once.
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass
from pathlib import Path

from certfleet.agent.webserver import Webserver, WebserverKind, webserver_for_kind
from certfleet.core.domains import validate_domain
from certfleet.core.errors import CertfleetError, InvalidDomainError

MAX_WEBSERVERS = 16
MAX_SPEC_CHARACTERS = 4096
KEYS = ("kind", "domains", "test", "reload", "pid-file", "probe")
_COMMAND_FLAGS = (
    ("test_command", "--test-command", "test"),
    ("reload_command", "--reload-command", "reload"),
    ("webserver_pid_file", "--webserver-pid-file", "pid-file"),
)


class WebserverConfigError(CertfleetError):
    """A `--webserver` cannot be used."""


@dataclass(frozen=True)
class WebserverConfig:
    """One webserver of the node: how to test and reload it, what it serves, where to probe."""

    name: str  # its kind, numbered when a kind repeats: for the log
    kind: WebserverKind
    domains: tuple[str, ...]
    probe_address: str  # HOST:PORT, or 'none'
    webserver: Webserver | None  # None without reloading (`--no-reload`)

    @property
    def combined_pem(self) -> bool:
        """haproxy reads the chain and the key from one file."""
        return self.kind is WebserverKind.HAPROXY


def split_specs(text: str) -> list[str]:
    """CERTFLEET_WEBSERVER's webservers: separated by `;` outside quotes."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";")
    lexer.whitespace_split = True
    specs: list[list[str]] = [[]]
    try:
        for token in lexer:
            if token and set(token) == {";"}:
                specs.extend([] for _ in token)
            else:
                specs[-1].append(token)
    except ValueError as error:  # an unclosed quote
        raise WebserverConfigError(f"CERTFLEET_WEBSERVER: {error}") from None
    return [shlex.join(words) for words in specs if words]


def parse_spec(text: str) -> dict[str, str]:
    """`KIND KEY=VALUE...` (or `kind=KIND ...`) into its keys; each at most once."""
    if len(text) > MAX_SPEC_CHARACTERS:
        raise WebserverConfigError(f"--webserver: longer than {MAX_SPEC_CHARACTERS} characters")
    try:
        words = shlex.split(text)
    except ValueError as error:
        raise WebserverConfigError(f"--webserver {text!r}: {error}") from None
    if not words:
        raise WebserverConfigError("--webserver: empty")
    if "=" not in words[0]:
        words[0] = f"kind={words[0]}"
    keys: dict[str, str] = {}
    for word in words:
        key, equals, value = word.partition("=")
        if not equals:
            raise WebserverConfigError(f"--webserver {text!r}: {word!r} is not KEY=VALUE")
        if key not in KEYS:
            raise WebserverConfigError(
                f"--webserver {text!r}: unknown key {key!r} (known: {', '.join(KEYS)})"
            )
        if key in keys:
            raise WebserverConfigError(f"--webserver {text!r}: {key} is given twice")
        keys[key] = value
    if "kind" not in keys:
        raise WebserverConfigError(f"--webserver {text!r}: which kind (nginx, apache2, ...)?")
    return keys


def _kind(value: str) -> WebserverKind:
    try:
        return WebserverKind(value)
    except ValueError:
        known = ", ".join(kind.value for kind in WebserverKind)
        raise WebserverConfigError(f"--webserver: unknown kind {value!r} ({known})") from None


def _domains(value: str, domains: tuple[str, ...]) -> tuple[str, ...]:
    named = []
    for name in (each.strip() for each in value.split(",")):
        if not name:
            continue
        try:
            domain = validate_domain(name)
        except InvalidDomainError as error:
            raise WebserverConfigError(f"--webserver domains=: {error}") from None
        if domain not in domains:
            raise WebserverConfigError(
                f"--webserver domains=: {domain} is not one of the certificates (--domain)"
            )
        named.append(domain)
    if not named:
        raise WebserverConfigError("--webserver domains=: names no domain")
    return tuple(named)


def webservers_from_args(
    args: argparse.Namespace, domains: tuple[str, ...]
) -> tuple[WebserverConfig, ...]:
    """The node's webservers, each with its domains; every domain has exactly one."""
    specs = args.webserver or getattr(args, "env_webservers", None) or [WebserverKind.NGINX.value]
    if len(specs) > MAX_WEBSERVERS:
        raise WebserverConfigError(f"--webserver: at most {MAX_WEBSERVERS} webservers")
    parsed = [parse_spec(spec) for spec in specs]
    several = len(parsed) > 1
    if several:
        for attribute, flag, key in _COMMAND_FLAGS:
            if getattr(args, attribute) is not None:
                raise WebserverConfigError(
                    f"{flag}: with several --webserver, give each its own {key}= instead"
                )
    counts: dict[str, int] = {}
    configs = []
    owner: dict[str, str] = {}
    for keys in parsed:
        kind = _kind(keys["kind"])
        counts[kind] = counts.get(kind, 0) + 1
        name = kind.value if counts[kind] == 1 else f"{kind.value}-{counts[kind]}"
        if "domains" in keys:
            served = _domains(keys["domains"], domains)
        elif several:
            raise WebserverConfigError(
                f"--webserver {name}: with several webservers, each names its domains= "
                "(comma-separated)"
            )
        else:
            served = domains
        for domain in served:
            if domain in owner:
                raise WebserverConfigError(
                    f"--webserver: {domain} is served by {owner[domain]} and by {name}; "
                    "each domain's files belong to one webserver"
                )
            owner[domain] = name
        configs.append(
            WebserverConfig(
                name=name,
                kind=kind,
                domains=served,
                probe_address=keys.get("probe", args.probe_address),
                webserver=_webserver(args, kind, keys) if args.reload else None,
            )
        )
    unserved = [domain for domain in domains if domain not in owner]
    if unserved:
        raise WebserverConfigError(
            f"--webserver: no webserver serves {', '.join(unserved)} (add it to a domains=)"
        )
    return tuple(configs)


def _webserver(args: argparse.Namespace, kind: WebserverKind, keys: dict[str, str]) -> Webserver:
    pid_file = keys.get("pid-file", args.webserver_pid_file)
    try:
        return webserver_for_kind(
            kind,
            keys.get("test", args.test_command),
            keys.get("reload", args.reload_command),
            args.command_timeout,
            pid_file=Path(pid_file) if pid_file else None,
        )
    except ValueError as error:
        raise WebserverConfigError(f"--webserver {kind}: {error}") from None
