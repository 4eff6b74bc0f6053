"""Domain names: validation for resource specs and file paths, and certificate name matching.

A domain becomes part of ``ssl/live/<domain>/`` on every webserver and of S3 keys, so a
validated name is, by construction, a safe single path component: lowercase ASCII letters,
digits, hyphens and dots, optionally a leading ``*.``; never empty, never ``.`` or ``..``,
never starting with a dot, never containing ``/``, ``\\`` or NUL.
"""

from __future__ import annotations

import re

import idna

from certfleet.core.errors import InvalidDomainError

MAX_DOMAIN_LENGTH = 253  # RFC 1035, without the trailing dot
MAX_LABEL_LENGTH = 63
# A wildcard's folder on disk: "*" is legal in a file name but a trap in every shell.
WILDCARD_FOLDER_PREFIX = "_wildcard."
# idna's cost grows with input; nothing this long can be valid after mapping anyway.
_MAX_INPUT_LENGTH = 4 * MAX_DOMAIN_LENGTH

_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")


def validate_domain(name: str, *, allow_wildcard: bool = True) -> str:
    """Return the normalised form of ``name`` (lowercase, A-labels) or raise InvalidDomainError.

    Rules: RFC 1123 labels (letters, digits, inner hyphens; 1 to 63 characters), at most 253
    characters in total, at least two labels, a top-level label that is not all digits (so
    IPv4 addresses are rejected), internationalised names converted with IDNA 2008 + UTS 46
    (as browsers and Let's Encrypt do), ``xn--`` labels that decode, no other ``??--`` labels
    (reserved by IDNA; CAs refuse them). A wildcard is only the whole leftmost label
    (``*.example.com``), needs two labels after it, and is refused when ``allow_wildcard`` is
    False. No trailing dot: ``example.com.`` would name a different directory.
    """
    if not isinstance(name, str):
        raise InvalidDomainError(f"domain must be a string, not {type(name).__name__}")
    if not name:
        raise InvalidDomainError("domain is empty")
    if len(name) > _MAX_INPUT_LENGTH:
        raise InvalidDomainError(f"domain is longer than {MAX_DOMAIN_LENGTH} characters")
    # Path-escape characters first, with messages that say why they matter.
    if "\x00" in name:
        raise InvalidDomainError("domain contains a NUL character")
    if "/" in name or "\\" in name:
        raise InvalidDomainError(f"domain {name!r} contains a path separator")
    if any(ch.isspace() or not ch.isprintable() for ch in name):
        raise InvalidDomainError(f"domain {name!r} contains whitespace or control characters")
    if name.startswith("."):
        raise InvalidDomainError(f"domain {name!r} starts with a dot")
    if name.endswith("."):
        raise InvalidDomainError(f"domain {name!r} ends with a dot; write it without one")
    if ".." in name:
        raise InvalidDomainError(f"domain {name!r} contains an empty label ('..')")

    wildcard = name.startswith("*.")
    rest = name[2:] if wildcard else name
    if wildcard and not allow_wildcard:
        raise InvalidDomainError(f"domain {name!r} is a wildcard, which is not allowed here")
    if "*" in rest:
        raise InvalidDomainError(
            f"domain {name!r}: a wildcard '*' is only allowed as the whole leftmost label"
        )

    ascii_name = rest if rest.isascii() else _to_ascii(name, rest)
    # The label checks run on the ASCII form, so UTS 46 mapping cannot smuggle anything in.
    labels = ascii_name.lower().split(".")
    for label in labels:
        _check_label(name, label)
    if len(labels) < 2:
        # Also gives a wildcard its two labels after "*.": no "*.com".
        raise InvalidDomainError(
            f"domain {name!r} has a single label{' after *.' if wildcard else ''}; "
            "a fully qualified name is needed"
        )
    if labels[-1].isdigit():
        raise InvalidDomainError(
            f"domain {name!r} has an all-numeric top-level label (an IP address?)"
        )
    result = ("*." if wildcard else "") + ".".join(labels)
    if len(result) > MAX_DOMAIN_LENGTH:
        raise InvalidDomainError(
            f"domain {name!r} is {len(result)} characters long (as ASCII); "
            f"at most {MAX_DOMAIN_LENGTH} are allowed"
        )
    return result


def folder_name(domain: str) -> str:
    """The folder of `domain`'s files (the agent's root, the build machine's runtimedata);
    raises InvalidDomainError for a bad name."""
    name = validate_domain(domain)
    if name.startswith("*."):
        return WILDCARD_FOLDER_PREFIX + name[2:]
    return name


def domain_matches(pattern: str, name: str) -> bool:
    """Whether a certificate name ``pattern`` covers the host ``name`` (RFC 6125).

    Case-insensitive, IDNA-aware. A wildcard pattern matches exactly one whole leftmost
    label: ``*.example.com`` covers ``www.example.com`` but neither ``example.com`` nor
    ``a.b.example.com``; partial wildcards such as ``w*.example.com`` match only themselves.
    A wildcard ``name`` (from a spec) is covered only by the identical wildcard pattern.
    Invalid input on either side matches nothing.
    """
    p = _normalise_lenient(pattern)
    n = _normalise_lenient(name)
    if p is None or n is None:
        return False
    if p == n:
        return True
    if p.startswith("*.") and not n.startswith("*."):
        head, dot, tail = n.partition(".")
        return bool(dot) and bool(head) and "*" not in head and tail == p[2:]
    return False


def _to_ascii(original: str, rest: str) -> str:
    try:
        return idna.encode(rest, uts46=True, std3_rules=True, transitional=False).decode("ascii")
    except (UnicodeError, ValueError) as exc:  # idna.IDNAError is a UnicodeError
        raise InvalidDomainError(f"domain {original!r} is not a valid IDNA name: {exc}") from None


def _check_label(name: str, label: str) -> None:
    if not label:
        raise InvalidDomainError(f"domain {name!r} contains an empty label")
    if len(label) > MAX_LABEL_LENGTH:
        raise InvalidDomainError(
            f"domain {name!r} has a label of {len(label)} characters; "
            f"at most {MAX_LABEL_LENGTH} are allowed"
        )
    if not _LDH_LABEL.fullmatch(label):
        raise InvalidDomainError(
            f"domain {name!r}: label {label!r} must be letters, digits and inner hyphens"
        )
    if label[2:4] == "--":
        if not label.startswith("xn--"):
            raise InvalidDomainError(
                f"domain {name!r}: label {label!r} has '--' in positions 3 and 4, "
                "which IDNA reserves"
            )
        try:
            ulabel = idna.decode(label)
            roundtrip = idna.encode(ulabel).decode("ascii")
        except (UnicodeError, ValueError):
            roundtrip = None
        if roundtrip != label:
            raise InvalidDomainError(f"domain {name!r}: {label!r} is not a valid IDNA A-label")


def _normalise_lenient(value: str) -> str | None:
    """Lowercase A-label form for comparison; None if it cannot be a host name at all."""
    if not value or len(value) > _MAX_INPUT_LENGTH:
        return None
    value = value.removesuffix(".")
    if value.isascii():
        return value.lower()
    wildcard = value.startswith("*.")
    try:
        encoded = idna.encode(
            value[2:] if wildcard else value, uts46=True, transitional=False
        ).decode("ascii")
    except (UnicodeError, ValueError):
        return None
    return ("*." if wildcard else "") + encoded.lower()
