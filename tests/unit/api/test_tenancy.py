"""Which namespaces a CloudHost admits (pure): its own list, the operator's, a label."""

from __future__ import annotations

from typing import Any

import pytest

from certfleet.api.spec import InvalidSpecError, parse_cloudhost
from certfleet.api.tenancy import admits, namespace_label, refusal

SPEC: dict[str, Any] = {
    "bucket": "b",
    "credentialsSecretRef": {"namespace": "certfleet-system", "name": "s3"},
    "encryptionKeySecretRef": {"namespace": "certfleet-system", "name": "key"},
}
OPERATOR = "certfleet-system"


def cloudhost(allowed: list[str] | None = None) -> Any:
    spec = dict(SPEC) if allowed is None else {**SPEC, "allowedNamespaces": allowed}
    return parse_cloudhost("prod", spec)


@pytest.mark.parametrize(
    ("sentence", "allowed", "namespace", "labels", "admitted"),
    [
        ("by default, the operator's namespace", None, OPERATOR, None, True),
        ("by default, no other namespace", None, "shop", {}, False),
        (
            "a namespace labelled for the CloudHost",
            None,
            "shop",
            {"cloudhost.certfleet.io/prod": "allowed"},
            True,
        ),
        (
            "a label with another value",
            None,
            "shop",
            {"cloudhost.certfleet.io/prod": "true"},
            False,
        ),
        (
            "a label for another CloudHost",
            None,
            "shop",
            {"cloudhost.certfleet.io/dev": "allowed"},
            False,
        ),
        ("a listed namespace", ["shop"], "shop", None, True),
        ("an unlisted namespace", ["shop"], "other", {}, False),
        ("'*' admits every namespace", ["*"], "other", None, True),
        ("the operator's namespace whatever the list", ["shop"], OPERATOR, None, True),
    ],
)
def test_admission(
    sentence: str,
    allowed: list[str] | None,
    namespace: str,
    labels: dict[str, str] | None,
    admitted: bool,
) -> None:
    assert admits(cloudhost(allowed), namespace, OPERATOR, labels) is admitted


def test_the_refusal_says_both_ways_in() -> None:
    message = refusal(cloudhost(), "shop")
    assert "spec.allowedNamespaces" in message and "cloudhost.certfleet.io/prod=allowed" in message
    assert namespace_label("prod") == "cloudhost.certfleet.io/prod"


@pytest.mark.parametrize("allowed", ["shop", ["Shop"], ["a/b"], [7], ["*", ""]])
def test_a_bad_list_is_refused(allowed: Any) -> None:
    with pytest.raises(InvalidSpecError, match="allowedNamespaces"):
        parse_cloudhost("prod", {**SPEC, "allowedNamespaces": allowed})
