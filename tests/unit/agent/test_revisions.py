"""The agent's record of the highest revision accepted per location."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from certfleet.agent.installer import InstallError
from certfleet.agent.revisions import RevisionMemory
from certfleet.datastore.location import DatastoreLocation

HERE = DatastoreLocation("bucket-1", "certfleet", "aws", "build-7", "www.example.com")
MOVED = DatastoreLocation("bucket-2", "other", "aws", "build-7", "www.example.com")
OTHER_BUILD = DatastoreLocation("bucket-1", "certfleet", "aws", "build-8", "www.example.com")


def test_nothing_recorded_is_zero_and_the_record_only_grows(tmp_path: Path) -> None:
    memory = RevisionMemory(tmp_path)
    assert memory.highest(HERE) == 0
    memory.remember(HERE, 5)
    memory.remember(HERE, 3)  # never lowered
    assert memory.highest(HERE) == 5
    assert RevisionMemory(tmp_path).highest(HERE) == 5, "it outlives the process"
    assert (tmp_path / "revisions.json").stat().st_mode & 0o777 == 0o600
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]


def test_locations_are_the_certificates_identity_not_the_bucket(tmp_path: Path) -> None:
    memory = RevisionMemory(tmp_path)
    memory.remember(HERE, 5)
    assert memory.highest(MOVED) == 5  # the same (cloudhost, build, domain) elsewhere
    assert memory.highest(OTHER_BUILD) == 0


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"[]",
        json.dumps({"format_version": 2, "highest": {}}).encode(),
        json.dumps({"format_version": 1, "highest": {"a/b/c": "5"}}).encode(),
        json.dumps({"format_version": 1, "highest": {"a/b/c": -1}}).encode(),
        json.dumps({"format_version": 1, "highest": {"a/b/c": True}}).encode(),
        b" " * 70_000,
    ],
    ids=["garbage", "a list", "version 2", "a string", "negative", "a bool", "huge"],
)
def test_a_record_that_is_not_ours_is_never_reset_silently(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "revisions.json").write_bytes(content)
    with pytest.raises(InstallError, match="remove it"):
        RevisionMemory(tmp_path).highest(HERE)


def test_a_symlink_in_place_of_the_record_is_not_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps({"format_version": 1, "highest": {}}))
    (tmp_path / "revisions.json").symlink_to(elsewhere)
    with pytest.raises(InstallError, match="cannot read"):
        RevisionMemory(tmp_path).highest(HERE)
