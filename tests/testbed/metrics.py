"""One sample of a program's /metrics, read as Prometheus would scrape it."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def metric_value(port: int, metric: str, labels: dict[str, str]) -> float | None:
    """The first sample named `metric` whose labels include `labels`; None if there is none."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == metric and labels.items() <= sample.labels.items():
                return float(sample.value)
    return None
