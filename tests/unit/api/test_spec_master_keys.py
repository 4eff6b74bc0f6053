"""A CloudHost's master keys: the current one and those a rotation is retiring."""

from __future__ import annotations

from typing import Any

import pytest

from certfleet.api.spec import InvalidSpecError, ObjectRef, parse_cloudhost

CLOUDHOST: dict[str, Any] = {
    "bucket": "certs",
    "credentialsSecretRef": {"namespace": "ops", "name": "s3"},
    "encryptionKeySecretRef": {"namespace": "ops", "name": "key-2"},
}


def test_without_previous_keys_there_is_only_the_current_one() -> None:
    config = parse_cloudhost("sandbox", CLOUDHOST)
    assert config.encryption_key == ObjectRef("ops", "key-2")
    assert config.previous_encryption_keys == ()


def test_previous_keys_are_read_in_order() -> None:
    previous = [{"namespace": "ops", "name": "key-1"}, {"namespace": "ops", "name": "key-0"}]
    config = parse_cloudhost("sandbox", {**CLOUDHOST, "previousEncryptionKeySecretRefs": previous})
    assert config.previous_encryption_keys == (ObjectRef("ops", "key-1"), ObjectRef("ops", "key-0"))


@pytest.mark.parametrize(
    "value",
    [
        {"namespace": "ops", "name": "key-1"},  # not a list
        [{"name": "key-1"}],  # no namespace
        ["key-1"],
        [{"namespace": "ops", "name": f"key-{n}"} for n in range(9)],  # too many
    ],
    ids=["not a list", "no namespace", "a string", "nine"],
)
def test_bad_previous_keys_are_refused(value: object) -> None:
    with pytest.raises(InvalidSpecError, match="previousEncryptionKeySecretRefs"):
        parse_cloudhost("sandbox", {**CLOUDHOST, "previousEncryptionKeySecretRefs": value})
