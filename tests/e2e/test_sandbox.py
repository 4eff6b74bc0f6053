"""The README's first command works: `make sandbox` runs certfleet's main job from nothing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from testbed.certfleet_install import REPO

pytestmark = pytest.mark.testbed


def test_the_sandbox_shows_the_example_certificate_turning_ready() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "testbed.sandbox", "--exit-when-ready"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO / "tests")},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "www-example is Ready" in result.stdout
    wide = result.stdout.split("www-example is Ready")[0].splitlines()
    ready_rows = [line.split() for line in wide if line.startswith("www-example")]
    assert ready_rows and ready_rows[-1][1] == "True", result.stdout
    # The MANUAL example waits for its Secret, and says so in the wide table.
    assert "waiting for the kubernetes.io/tls Secret default/shop-example-tls" in result.stdout
