"""Writes prometheusrule.yaml from certfleet-rules.yaml, the one source of the alert rules.

Run it after editing the rules; with --check it only exits 1 when the file is out of date.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
RULES = HERE / "certfleet-rules.yaml"
OUTPUT = HERE / "prometheusrule.yaml"
HEADER = (
    "# GENERATED from certfleet-rules.yaml by render_prometheusrule.py: edit that file and run\n"
    "# `python deploy/monitoring/render_prometheusrule.py`. tests/monitoring checks they agree.\n"
)


class _Dumper(yaml.SafeDumper):
    pass


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # Multi-line expressions and descriptions stay readable block scalars.
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)


def render() -> str:
    rules: dict[str, Any] = yaml.safe_load(RULES.read_text())
    resource = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "certfleet",
            "namespace": "certfleet-system",
            "labels": {"app.kubernetes.io/name": "certfleet"},
        },
        "spec": {"groups": rules["groups"]},
    }
    body = yaml.dump(resource, Dumper=_Dumper, sort_keys=False, width=1000)
    return HEADER + body


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if OUTPUT.read_text() != text:
            print(f"{OUTPUT} is out of date: run python {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
