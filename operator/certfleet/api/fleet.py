"""The fleet summary of a ManagedCertificate: how many nodes serve the current serial (pure).

Agents write `status.fleet.nodes.<node>` = {servedSerial, lastSuccessfulSync, lastError,
reason, installedSerial}; the operator writes `status.serialNumber`. From those two, this
module computes `status.fleet.summary` ("3/3 nodes serve serial 0a1b...") with the counts
beside it, and the merge patch that writes them when they changed. Everything under
`status.fleet.nodes` was written by agents, so it is treated as untrusted: type-checked,
and only short, known fields end up in the summary.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Names of lagging nodes shown in the summary; the rest is counted.
SHOWN_NODES = 5
_SERIAL = re.compile(r"[0-9a-f]{1,64}")
_REASON = re.compile(r"[A-Za-z]{1,64}")


def _serial(value: object) -> str | None:
    return value if isinstance(value, str) and _SERIAL.fullmatch(value) else None


def fleet_summary(status: Mapping[str, Any]) -> dict[str, Any]:
    """{"summary": text, "nodesServingCurrent": n, "nodeCount": total} for a status."""
    fleet = status.get("fleet")
    nodes = fleet.get("nodes") if isinstance(fleet, Mapping) else None
    entries = {
        str(name): entry
        for name, entry in (nodes.items() if isinstance(nodes, Mapping) else ())
        if isinstance(entry, Mapping)
    }
    current = _serial(status.get("serialNumber"))
    total = len(entries)
    if total == 0:
        text = "no node has reported yet"
        serving = 0
    elif current is None:
        text = f"no certificate is published yet; {total} node{'s' if total != 1 else ''} reported"
        serving = 0
    else:
        lagging = sorted(
            name for name, entry in entries.items() if _serial(entry.get("servedSerial")) != current
        )
        serving = total - len(lagging)
        text = f"{serving}/{total} nodes serve serial {current}"
        if lagging:
            shown = [_describe(name, entries[name]) for name in lagging[:SHOWN_NODES]]
            more = len(lagging) - SHOWN_NODES
            text += "; not yet: " + ", ".join(shown) + (f" and {more} more" if more > 0 else "")
    return {"summary": text, "nodesServingCurrent": serving, "nodeCount": total}


def _describe(name: str, entry: Mapping[str, Any]) -> str:
    served = _serial(entry.get("servedSerial"))
    reason = entry.get("reason")
    details = [f"serves {served}" if served else "serves nothing known"]
    if isinstance(reason, str) and _REASON.fullmatch(reason):
        details.append(reason)
    return f"{name[:63]} ({', '.join(details)})"


def fleet_summary_patch(status: Mapping[str, Any]) -> dict[str, Any] | None:
    """The status merge patch that brings the summary up to date; None when it is. The
    operator's own status patches carry it (they change the serial it counts)."""
    summary = fleet_summary(status)
    fleet = status.get("fleet")
    present = fleet if isinstance(fleet, Mapping) else {}
    if all(present.get(key) == value for key, value in summary.items()):
        return None
    return {"fleet": summary}


def agents_summary_patch(status: Mapping[str, Any]) -> dict[str, Any] | None:
    """The summary patch owed to what the agents wrote since the operator's last status
    patch. None before the operator has reported at all (no conditions yet): its first status
    patch carries the summary, so a new resource's first event costs no write of its own."""
    conditions = status.get("conditions")
    if not isinstance(conditions, list) or not conditions:
        return None
    return fleet_summary_patch(status)
