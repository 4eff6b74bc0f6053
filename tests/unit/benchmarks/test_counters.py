"""The benchmark's request counters read the servers' own logs: one line per request, told
apart by user and user agent (kube-apiserver) or access key (versitygw)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.counters import AuditLog, S3AccessLog, seconds


def _audit(user: str, agent: str, verb: str, resource: str, code: int, sub: str = "") -> str:
    ref = {"resource": resource, **({"subresource": sub} if sub else {})}
    return json.dumps(
        {
            "verb": verb,
            "user": {"username": user},
            "userAgent": agent,
            "objectRef": ref,
            "responseStatus": {"code": code},
        }
    )


def test_audit_log_counts_one_users_requests_since_the_mark(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    log.path.write_text(_audit("admin", "kopf/1", "get", "secrets", 200) + "\n")
    mark = log.mark()
    with log.path.open("a") as out:
        for line in (
            _audit("admin", "kopf/1", "patch", "managedcertificates", 200, "status"),
            _audit("admin", "OpenAPI-Generator/36/python", "get", "secrets", 404),
            _audit("admin", "kubectl/v1.36", "get", "secrets", 200),
            _audit("bench", "certfleet-bench", "create", "managedcertificates", 201),
        ):
            out.write(line + "\n")
        out.write('{"verb": "get", "user": {"username": "admin"')  # a line half written

    tally = log.tally(mark, "admin", exclude_agents=("kubectl",))

    assert dict(tally.kinds) == {"patch managedcertificates/status 200": 1, "get secrets 404": 1}
    assert tally.per(2) == 1.0


def test_tally_without_the_lease_renewals(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    log.path.write_text(
        "\n".join(
            [_audit("admin", "a", "update", "leases", 200), _audit("admin", "a", "get", "x", 200)]
        )
        + "\n"
    )
    assert log.tally(0, "admin").without("leases").total == 1


def test_s3_access_log_counts_by_access_key(tmp_path: Path) -> None:
    # versitygw's --access-log lines, as it writes them (shortened after the status).
    lines = [
        "op bucket-one [02/December/2026:01:29:34 +0000] 127.0.0.1 op WNO5 s3_PutObject k "
        "/bucket-one/k 200 - 0 100 0 0 - Boto3/1.44.8",
        "op bucket-one [02/December/2026:01:29:34 +0000] 127.0.0.1 agent-1 6AUM s3_GetObject k "
        "/bucket-one/k 304 NotModified 0 0 0 0 - Boto3/1.44.8",
        "op bucket-one [02/December/2026:01:29:35 +0000] 127.0.0.1 op 9Y4F s3_GetObject k "
        "/bucket-one/k 404 NoSuchKey 0 0 0 0 - Boto3/1.44.8",
    ]
    log = S3AccessLog(tmp_path / "access.log")
    log.path.write_text("\n".join(lines) + "\n")

    assert dict(log.tally(0, {"op"}).kinds) == {"PutObject 200": 1, "GetObject 404": 1}
    assert dict(log.tally(0, {"agent-1"}).kinds) == {"GetObject 304": 1}


def test_audit_timestamps_are_unix_seconds() -> None:
    assert seconds("1970-01-01T00:00:01.5Z") == 1.5
    later = seconds("2026-12-02T01:48:23.386303Z") - seconds("2026-12-02T01:48:23.325768Z")
    assert later == pytest.approx(0.060535)
