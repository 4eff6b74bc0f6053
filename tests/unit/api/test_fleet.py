"""The operator's fleet summary, a pure function of status.fleet.nodes and status.serialNumber."""

from __future__ import annotations

from typing import Any

from certfleet.api.fleet import agents_summary_patch, fleet_summary, fleet_summary_patch


def status(serial: str | None, **nodes: Any) -> dict[str, Any]:
    found: dict[str, Any] = {"fleet": {"nodes": nodes}}
    if serial is not None:
        found["serialNumber"] = serial
    return found


def test_all_nodes_serve_the_current_serial() -> None:
    summary = fleet_summary(
        status(
            "0a1b",
            a={"servedSerial": "0a1b"},
            b={"servedSerial": "0a1b"},
            c={"servedSerial": "0a1b"},
        )
    )
    assert summary == {
        "summary": "3/3 nodes serve serial 0a1b",
        "nodesServingCurrent": 3,
        "nodeCount": 3,
    }


def test_lagging_nodes_are_named_with_what_they_serve_and_why() -> None:
    summary = fleet_summary(
        status(
            "0a1b",
            a={"servedSerial": "0a1b"},
            c={"servedSerial": "09ff", "reason": "KeyMismatch", "lastError": "refused ..."},
            b={"reason": "NotPublished"},
        )
    )
    assert summary["summary"] == (
        "1/3 nodes serve serial 0a1b; not yet: b (serves nothing known, NotPublished), "
        "c (serves 09ff, KeyMismatch)"
    )
    assert (summary["nodesServingCurrent"], summary["nodeCount"]) == (1, 3)


def test_many_lagging_nodes_are_counted_not_listed() -> None:
    nodes = {f"node-{n:02d}": {"servedSerial": "01"} for n in range(9)}
    text = fleet_summary(status("02", **nodes))["summary"]
    assert text.startswith("0/9 nodes serve serial 02; not yet: node-00 (serves 01)")
    assert text.endswith("and 4 more")


def test_before_any_report_or_publication() -> None:
    assert fleet_summary({})["summary"] == "no node has reported yet"
    assert fleet_summary(status(None, a={"reason": "NotPublished"}))["summary"] == (
        "no certificate is published yet; 1 node reported"
    )


def test_what_agents_wrote_is_untrusted() -> None:
    text = fleet_summary(
        status(
            "0a1b",
            good={"servedSerial": "0a1b"},
            weird={"servedSerial": "<script>", "reason": "x" * 500},
            broken="not a mapping",
            listed=["servedSerial", "0a1b"],
        )
    )["summary"]
    assert text == "1/2 nodes serve serial 0a1b; not yet: weird (serves nothing known)"
    assert fleet_summary({"fleet": "garbage", "serialNumber": 5})["nodeCount"] == 0


def test_the_patch_is_none_once_the_summary_is_written() -> None:
    current = status("0a1b", a={"servedSerial": "0a1b"})
    patch = fleet_summary_patch(current)
    assert patch == {"fleet": fleet_summary(current)}
    current["fleet"].update(patch["fleet"])
    assert fleet_summary_patch(current) is None
    # A new serial from the operator makes the summary stale again.
    current["serialNumber"] = "0c0d"
    again = fleet_summary_patch(current)
    assert again is not None and again["fleet"]["summary"].startswith("0/1 nodes serve serial 0c0d")


def test_the_agents_summary_waits_for_the_operators_first_status() -> None:
    # A new resource's first event: the operator's first status patch carries the summary.
    assert agents_summary_patch({}) is None
    assert agents_summary_patch(status(None, a={"reason": "NotPublished"})) is None
    # Once the operator has reported, what agents write since is summarised.
    reported = {**status("0a1b", a={"servedSerial": "0a1b"}), "conditions": [{"type": "Ready"}]}
    assert agents_summary_patch(reported) == fleet_summary_patch(reported) is not None
    reported["fleet"].update(fleet_summary(reported))
    assert agents_summary_patch(reported) is None
