"""What the operator itself says through /metrics: which certificates it has reconciled to
Ready since it started (a restart's progress is invisible in the API: nothing changes)."""

from __future__ import annotations

import re
import urllib.request

_READY = re.compile(r"^certfleet_certificate_ready_status\{([^}]*)\} 1\.0$", re.M)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def ready_names(port: int, namespace: str) -> set[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        text = response.read().decode()
    names = set()
    for found in _READY.finditer(text):
        labels = dict(_LABEL.findall(found.group(1)))
        if labels.get("condition") == "True" and labels.get("namespace") == namespace:
            names.add(labels["name"])
    return names
