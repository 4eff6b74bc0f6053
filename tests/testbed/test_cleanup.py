"""After a test run ends, by a failure or by Ctrl-C, no server it started is left running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.processes import process_group_exists
from testbed.waiting import wait_for

pytestmark = pytest.mark.testbed

CASE = Path(__file__).parent / "cleanup_cases" / "case_servers.py"
REPO = Path(__file__).resolve().parents[2]


def _start_case(mode: str, tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    pids = tmp_path / "pids.json"
    env = dict(os.environ, CERTFLEET_CASE_MODE=mode, CERTFLEET_CASE_PIDS=str(pids))
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            str(CASE),
            "-o",
            "python_files=case_*.py",
            "-p",
            "no:cacheprovider",
            f"--basetemp={tmp_path / 'child'}",
            "-q",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    return child, pids


def _wait_for(path: Path, child: subprocess.Popen[bytes], timeout: float = 120) -> list[int]:
    """The process groups the child run wrote to `path` once its servers ran; fails at once if
    the child ends first."""

    def written() -> bool:
        if path.exists():
            return True
        assert child.poll() is None, f"the child run ended early:\n{child.stdout.read().decode()}"  # type: ignore[union-attr]
        return False

    wait_for("the child run starting its servers", written, timeout)
    groups: list[int] = json.loads(path.read_text())
    return groups


def test_failed_test_leaves_no_server_running(tmp_path: Path) -> None:
    child, pids = _start_case("fail", tmp_path)
    output = child.communicate(timeout=180)[0].decode()
    assert child.returncode == 1, output
    assert "failing on purpose" in output
    groups = json.loads(pids.read_text())
    assert len(groups) == 7  # etcd, kube-apiserver, versitygw, pebble, challtestsrv, 2 nginx
    assert [g for g in groups if process_group_exists(g)] == []


def test_interrupted_run_leaves_no_server_running(tmp_path: Path) -> None:
    child, pids = _start_case("interrupt", tmp_path)
    groups = _wait_for(pids, child)
    assert all(process_group_exists(g) for g in groups)

    child.send_signal(signal.SIGINT)  # what Ctrl-C sends
    output = child.communicate(timeout=60)[0].decode()
    assert "KeyboardInterrupt" in output, output
    assert [g for g in groups if process_group_exists(g)] == []


def test_terminated_run_leaves_no_server_running(tmp_path: Path) -> None:
    child, pids = _start_case("interrupt", tmp_path)
    groups = _wait_for(pids, child)

    child.terminate()  # what a CI runner or `kill` sends
    child.communicate(timeout=30)
    assert child.returncode == 128 + signal.SIGTERM
    assert [g for g in groups if process_group_exists(g)] == []
