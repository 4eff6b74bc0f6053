"""A CloudHost's trust bundle: spec.trustBundle parsed, read through the TrustBundles port,
and what a reconciliation says when it cannot be read (TrustBundleNotConfigured, nothing
published)."""

from __future__ import annotations

from typing import Any

import pytest

from certfleet.api.spec import InvalidSpecError, ObjectRef, TrustBundleRef, parse_cloudhost
from certfleet.controller.gather import gather
from certfleet.controller.plan import Request, Unobservable
from certfleet.controller.trust_bundles import (
    SecretTrustBundles,
    TrustBundleNotConfiguredError,
    system_roots,
)
from certfleet.core.errors import CertfleetError
from unit.controller.resources import CLOUDHOST, NAMESPACE, SPEC
from unit.core.certificates import pem, pki

TRUSTED = {"secretRef": {"namespace": "ops", "name": "roots"}}
ROOT = pki("ec").root.cert


def cloudhost(trust_bundle: Any = None) -> Any:
    spec = {**CLOUDHOST["spec"]}
    if trust_bundle is not None:
        spec["trustBundle"] = trust_bundle
    return parse_cloudhost("aws", spec)


def test_a_cloudhost_without_a_bundle_trusts_the_system_roots_alone() -> None:
    assert cloudhost().trust_bundle is None
    bundles = SecretTrustBundles(lambda *_: pytest.fail("nothing to read"), system_roots())
    assert bundles.roots(cloudhost()) == system_roots()
    assert len(system_roots()) > 50  # certifi's Mozilla list


def test_the_bundle_is_a_secret_key_ca_crt_by_default() -> None:
    assert cloudhost(TRUSTED).trust_bundle == TrustBundleRef(ObjectRef("ops", "roots"), "ca.crt")
    named = cloudhost({**TRUSTED, "key": "roots.pem"}).trust_bundle
    assert named == TrustBundleRef(ObjectRef("ops", "roots"), "roots.pem")


@pytest.mark.parametrize(
    "bad",
    [
        "ops/roots",
        {"secretRef": {"name": "roots"}},
        {"secretRef": {"namespace": "Ops", "name": "roots"}},
        {"secretRef": {"namespace": "ops", "name": "../roots"}},
        {**TRUSTED, "key": "../../etc/passwd"},
        {**TRUSTED, "key": ""},
    ],
    ids=["not-an-object", "no-namespace", "bad-namespace", "bad-name", "path-key", "empty-key"],
)
def test_a_bad_bundle_reference_is_a_spec_error(bad: Any) -> None:
    with pytest.raises(InvalidSpecError, match=r"spec\.trustBundle"):
        cloudhost(bad)


def lookup(values: dict[tuple[str, str, str], bytes]) -> Any:
    return lambda namespace, name, key: values.get((namespace, name, key))


def test_the_bundle_comes_first_then_the_system_roots() -> None:
    bundles = SecretTrustBundles(lookup({("ops", "roots", "ca.crt"): pem(ROOT)}), system_roots())
    roots = bundles.roots(cloudhost(TRUSTED))
    assert roots[0] == ROOT and roots[1:] == system_roots()


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({}, "does not exist"),
        ({("ops", "roots", "ca.crt"): b"not pem"}, "not a list of PEM certificates"),
    ],
    ids=["missing", "garbage"],
)
def test_an_unusable_bundle_is_trust_bundle_not_configured(
    values: dict[tuple[str, str, str], bytes], problem: str
) -> None:
    bundles = SecretTrustBundles(lookup(values), system_roots())
    with pytest.raises(TrustBundleNotConfiguredError, match=problem) as raised:
        bundles.roots(cloudhost(TRUSTED))
    assert raised.value.reason == "TrustBundleNotConfigured"
    assert "ops/roots" in str(raised.value)


def test_a_failing_lookup_is_trust_bundle_not_configured() -> None:
    def failing(*_: str) -> bytes | None:
        raise CertfleetError("the API server did not answer")

    with pytest.raises(TrustBundleNotConfiguredError, match="did not answer"):
        SecretTrustBundles(failing, ()).roots(cloudhost(TRUSTED))


def test_gather_stops_at_a_missing_bundle_so_nothing_is_judged_or_published() -> None:
    from unit.controller.test_reconcile import OWNER, FakeWorld

    world = FakeWorld(cloudhosts={"aws": {"spec": {**CLOUDHOST["spec"], "trustBundle": TRUSTED}}})
    ports = world.ports()
    ports = type(ports)(**{**ports.__dict__, "trust": SecretTrustBundles(lookup({}), ())})
    observed = gather(Request(NAMESPACE, SPEC, owner=OWNER), ports)
    assert isinstance(observed, Unobservable)
    assert (observed.reason, observed.retry) == ("TrustBundleNotConfigured", True)
