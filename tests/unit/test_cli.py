"""The command line's logging: --verbose opens certfleet's own loggers, never the client
libraries' (the Kubernetes client logs response bodies, Secrets included, at DEBUG)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from certfleet.cli import configure_logging

LIBRARIES = ("kubernetes.client.rest", "urllib3.connectionpool", "botocore.endpoint", "kopf")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    ours = logging.getLogger("certfleet").level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("certfleet").setLevel(ours)


@pytest.mark.parametrize("verbose", [False, True])
def test_client_libraries_never_log_bodies(verbose: bool) -> None:
    configure_logging(verbose)
    for name in LIBRARIES:
        assert not logging.getLogger(name).isEnabledFor(logging.DEBUG), name


def test_verbose_is_for_certfleet_itself() -> None:
    configure_logging(False)
    assert not logging.getLogger("certfleet.controller.act").isEnabledFor(logging.DEBUG)
    configure_logging(True)
    assert logging.getLogger("certfleet.controller.act").isEnabledFor(logging.DEBUG)
    assert logging.getLogger("certfleet.agent.loop").isEnabledFor(logging.DEBUG)
