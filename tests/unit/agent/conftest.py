"""Fixtures of the agent's command-line tests: a master key file and a clean environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .flags import MASTER


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "master.key"
    path.write_bytes(MASTER)
    return path


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CERTFLEET_* (or other agent) variable of the machine leaks into a default."""
    for name in list(os.environ):
        if name.startswith("CERTFLEET_") or name in ("WEBSITE_URL", "NODE_NAME", "KUBECONFIG"):
            monkeypatch.delenv(name)
