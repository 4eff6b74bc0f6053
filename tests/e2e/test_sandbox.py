"""The README's first command works: `make sandbox` runs certfleet's whole job from nothing:
the operator issues the example certificate, two agents install it into two nginx, the wide
table says both serve its serial, and the `curl` line it prints shows it served."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.certfleet_install import REPO
from testbed.processes import ServerProcess
from testbed.waiting import wait_for

pytestmark = pytest.mark.testbed

SANDBOX = [sys.executable, "-m", "testbed.sandbox"]
# This checkout's certfleet (operator/), whatever the virtualenv has installed.
ENV = {
    "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO / "operator")]),
    "PYTHONUNBUFFERED": "1",
}


def test_the_sandbox_shows_the_example_certificate_served_by_both_nodes() -> None:
    result = subprocess.run(
        [*SANDBOX, "--exit-when-ready"],
        cwd=REPO,
        env={**os.environ, **ENV},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "www-example is Ready" in result.stdout
    before, after = result.stdout.split("www-example is Ready")
    ready_rows = [line.split() for line in before.splitlines() if line.startswith("www-example")]
    assert ready_rows and ready_rows[-1][1] == "True", result.stdout
    # The wide table after the agents' reports: the fleet summary column says 2/2.
    (row,) = [line for line in after.splitlines() if line.startswith("www-example")]
    serial = row.split()[9]
    assert f"2/2 nodes serve serial {serial}" in row, row
    # The MANUAL example waits for its Secret, and says so in the wide table.
    assert "waiting for the kubernetes.io/tls Secret default/shop-example-tls" in result.stdout
    assert "curl --cacert " in after


def test_the_printed_curl_line_shows_the_certificate_served(tmp_path: Path) -> None:
    """While the sandbox runs, its `curl --cacert ...` line works as printed: a verified
    handshake with the example domain, over a node's TLS listener."""
    sandbox = ServerProcess("sandbox", SANDBOX, tmp_path / "sandbox.log", env=ENV, cwd=REPO)
    try:

        def curl_line() -> str | None:
            lines = sandbox.log_path.read_text().splitlines()
            return next((line.strip() for line in lines if line.strip().startswith("curl ")), None)

        sandbox.wait_until(lambda: curl_line() is not None, timeout=120, what="showing curl")
        printed = curl_line()
        assert printed is not None
        served = subprocess.run(
            [*shlex.split(printed), "--silent", "--show-error", "--max-time", "10"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert served.returncode == 0, served.stderr
        assert served.stdout == "served over tls\n"
        sandbox.signal(signal.SIGINT)  # Ctrl-C: the sandbox stops what it started
        wait_for("the sandbox to exit", lambda: not sandbox.alive(), timeout=60)
    finally:
        sandbox.stop()
