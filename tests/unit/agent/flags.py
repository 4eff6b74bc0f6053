"""The agent's command line for its unit tests: the required flags and a parser."""

from __future__ import annotations

import argparse
from pathlib import Path

from certfleet.agent import config as agent_config

MASTER = bytes(range(32))


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    agent_config.add_arguments(parser)
    return parser.parse_args(argv)


def required(key_file: Path) -> list[str]:
    return [
        "--s3-bucket=fleet-bucket",
        "--cloudhost=sandbox",
        "--build-identifier=build-1",
        "--domain=WWW.Example.com",
        f"--master-key-file={key_file}",
    ]
