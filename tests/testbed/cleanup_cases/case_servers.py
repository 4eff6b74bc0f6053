"""Run by test_cleanup.py in a child pytest (not collected by the main run): starts every kind of
test bed server, writes their process groups to $CERTFLEET_CASE_PIDS, then fails or waits to be
interrupted, as $CERTFLEET_CASE_MODE says."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from testbed.acme_ca import AcmeCA
from testbed.control_plane import ControlPlane
from testbed.processes import running_process_groups
from testbed.s3 import S3Server
from testbed.webserver import Nginx


def test_with_every_server_running(
    control_plane: ControlPlane,
    s3_server: S3Server,
    acme_ca: AcmeCA,
    start_nginx: Callable[..., Nginx],
) -> None:
    start_nginx()
    start_nginx()
    pids = Path(os.environ["CERTFLEET_CASE_PIDS"])
    pids.with_suffix(".tmp").write_text(json.dumps(running_process_groups()))
    pids.with_suffix(".tmp").rename(pids)
    if os.environ["CERTFLEET_CASE_MODE"] == "fail":
        raise AssertionError("failing on purpose, with servers running")
    time.sleep(300)  # the parent interrupts this run long before
