"""The pure decision: install this revision or not, and why, rule by rule."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import certfleet.agent.decision
from certfleet.agent.decision import Action, SyncReason, decide, judge
from certfleet.core.checks import Reason

from .pki import DAY, DOMAIN, NOW, leaf, roots


def test_a_valid_candidate_is_installed_on_an_empty_node() -> None:
    new = leaf()
    decision = decide(
        judge(new.fullchain, new.key, domain=DOMAIN, now=NOW, trust_roots=roots()),
        None,
        pointer_serial=new.serial,
    )
    assert decision.action is Action.INSTALL
    assert decision.reason is SyncReason.Installed
    assert new.serial in decision.message


def test_the_same_files_are_kept() -> None:
    pair = leaf()
    judged = judge(pair.fullchain, pair.key, domain=DOMAIN, now=NOW, trust_roots=roots())
    decision = decide(judged, judged, pointer_serial=pair.serial)
    assert (decision.action, decision.reason) == (Action.KEEP, SyncReason.UpToDate)


def test_a_newer_certificate_replaces_the_installed_one() -> None:
    old = leaf(not_before=NOW - 30 * DAY)
    new = leaf(not_before=NOW - DAY)
    decision = decide(
        judge(new.fullchain, new.key, domain=DOMAIN, now=NOW, trust_roots=roots()),
        judge(old.fullchain, old.key, domain=DOMAIN, now=NOW, trust_roots=roots()),
        pointer_serial=new.serial,
    )
    assert decision.action is Action.INSTALL


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("key of another certificate", Reason.KeyMismatch),
        ("expired", Reason.Expired),
        ("not yet valid", Reason.NotYetValid),
        ("another domain", Reason.NameMismatch),
        ("not PEM", Reason.InvalidPEM),
        ("key only", Reason.InvalidPEM),
    ],
)
def test_a_bad_candidate_is_refused_even_when_forced(case: str, reason: Reason) -> None:
    good = leaf()
    fullchain, key, serial = good.fullchain, good.key, good.serial
    if case == "key of another certificate":
        key = leaf().key
    elif case == "expired":
        expired = leaf(not_before=NOW - 100 * DAY, not_after=NOW - DAY)
        fullchain, key, serial = expired.fullchain, expired.key, expired.serial
    elif case == "not yet valid":
        future = leaf(not_before=NOW + DAY, not_after=NOW + 90 * DAY)
        fullchain, key, serial = future.fullchain, future.key, future.serial
    elif case == "another domain":
        other = leaf("other.example.com")
        fullchain, key, serial = other.fullchain, other.key, other.serial
    elif case == "not PEM":
        fullchain = b"\x00\x01 flipped bytes"
    else:
        fullchain = good.key
    installed = judge(good.fullchain, good.key, domain=DOMAIN, now=NOW, trust_roots=roots())
    for force in (False, True):
        decision = decide(
            judge(fullchain, key, domain=DOMAIN, now=NOW, trust_roots=roots()),
            installed,
            pointer_serial=serial,
            force=force,
        )
        assert (decision.action, decision.reason) == (Action.REFUSE, reason), decision
        assert "PRIVATE KEY" not in decision.message


def test_a_certificate_due_for_renewal_is_still_installed() -> None:
    # Three days left: the operator's renewal is due, but it is the best the datastore has.
    due = leaf(not_before=NOW - 87 * DAY, not_after=NOW + 3 * DAY)
    decision = decide(
        judge(due.fullchain, due.key, domain=DOMAIN, now=NOW, trust_roots=roots()),
        None,
        pointer_serial=due.serial,
    )
    assert decision.action is Action.INSTALL


def test_a_pointer_naming_another_serial_is_refused() -> None:
    pair = leaf()
    decision = decide(
        judge(pair.fullchain, pair.key, domain=DOMAIN, now=NOW, trust_roots=roots()),
        None,
        pointer_serial="0abc",
    )
    assert (decision.action, decision.reason) == (Action.REFUSE, SyncReason.PointerMismatch)
    assert "0abc" in decision.message and pair.serial in decision.message


def test_a_pointer_below_the_installed_revision_is_a_rollback_unless_forced() -> None:
    installed = leaf(not_before=NOW - 20 * DAY)
    newer = leaf(not_before=NOW - DAY)  # a newer certificate, in an older revision
    candidate = judge(newer.fullchain, newer.key, domain=DOMAIN, now=NOW, trust_roots=roots())
    current = judge(installed.fullchain, installed.key, domain=DOMAIN, now=NOW, trust_roots=roots())

    refused = decide(
        candidate, current, pointer_serial=newer.serial, pointer_revision=4, installed_revision=5
    )
    assert (refused.action, refused.reason) == (Action.REFUSE, SyncReason.Downgrade)
    assert "revision 4" in refused.message and "revision 5" in refused.message
    assert newer.serial in refused.message and installed.serial in refused.message

    forced = decide(
        candidate,
        current,
        pointer_serial=newer.serial,
        pointer_revision=4,
        installed_revision=5,
        force=True,
    )
    assert (forced.action, forced.reason) == (Action.INSTALL, SyncReason.Installed)
    assert "forced a downgrade" in forced.message


@pytest.mark.parametrize(
    ("pointer_revision", "installed_revision"), [(6, 5), (5, 5), (6, None), (None, 5)]
)
def test_a_certificate_issued_earlier_in_a_newer_revision_is_installed(
    pointer_revision: int | None, installed_revision: int | None
) -> None:
    # A person's MANUAL replacement, issued before the certificate it replaces: the revision
    # says it is newer (or, at the same revision, the files were edited by hand: repaired).
    installed = leaf(not_before=NOW - DAY)
    replacement = leaf(not_before=NOW - 20 * DAY)
    decision = decide(
        judge(replacement.fullchain, replacement.key, domain=DOMAIN, now=NOW, trust_roots=roots()),
        judge(installed.fullchain, installed.key, domain=DOMAIN, now=NOW, trust_roots=roots()),
        pointer_serial=replacement.serial,
        pointer_revision=pointer_revision,
        installed_revision=installed_revision,
    )
    assert (decision.action, decision.reason) == (Action.INSTALL, SyncReason.Installed)


@pytest.mark.parametrize("installed_case", ["placeholder for another name", "expired", "garbage"])
def test_an_unacceptable_installed_certificate_protects_nothing(installed_case: str) -> None:
    # A fresh webserver's self-signed placeholder is often newer than the real certificate.
    if installed_case == "placeholder for another name":
        placeholder = leaf("placeholder", not_before=NOW)
        installed = judge(
            placeholder.fullchain, placeholder.key, domain=DOMAIN, now=NOW, trust_roots=roots()
        )
    elif installed_case == "expired":
        gone = leaf(not_before=NOW - 10 * DAY, not_after=NOW - DAY)
        installed = judge(gone.fullchain, gone.key, domain=DOMAIN, now=NOW, trust_roots=roots())
    else:
        installed = judge(b"garbage", b"", domain=DOMAIN, now=NOW, trust_roots=roots())
    new = leaf(not_before=NOW - 30 * DAY)
    decision = decide(
        judge(new.fullchain, new.key, domain=DOMAIN, now=NOW, trust_roots=roots()),
        installed,
        pointer_serial=new.serial,
    )
    assert decision.action is Action.INSTALL


def test_an_installed_certificate_that_expired_is_reported_not_kept_silently() -> None:
    gone = leaf(not_before=NOW - 10 * DAY, not_after=NOW - DAY)
    judged = judge(gone.fullchain, gone.key, domain=DOMAIN, now=NOW, trust_roots=roots())
    decision = decide(judged, judged, pointer_serial=gone.serial)
    assert (decision.action, decision.reason) == (Action.REFUSE, Reason.Expired)


def test_the_agent_s_own_reasons_do_not_repeat_the_policy_s() -> None:
    # A refused candidate reports the policy's Reason itself; SyncReason adds only the agent's.
    assert not {str(reason) for reason in Reason} & {str(reason) for reason in SyncReason}


def test_the_decision_module_does_no_io() -> None:
    tree = ast.parse(Path(certfleet.agent.decision.__file__).read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    }
    # collections.abc and cryptography: the trust roots' types (no I/O in either).
    pure = {"__future__", "hashlib", "dataclasses", "datetime", "enum", "certfleet"}
    assert imported <= pure | {"collections", "cryptography"}
    from_imports = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("certfleet")
    }
    assert all(module.startswith("certfleet.core") for module in from_imports if module)
