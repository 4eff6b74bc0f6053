"""apply -> Ready of one AUTOMATIC HTTP-01 certificate, interleaved with the protocol floor and
poll_and_finalize on the same pebble, so all three see the same machine load."""

from __future__ import annotations

import re
import secrets
import time
import urllib.request

from bench.acme_floor import AcmeBaselines
from bench.bed import ADMIN_USER, Bed
from bench.counters import seconds
from bench.figures import Figure, Report, median, ms
from bench.kube_api import BENCH_USER, ReadyWatch

NAMESPACE = "bench-apply"
SECTION = "apply->Ready"
_ACME_SUM = re.compile(
    r'^certfleet_acme_client_request_duration_seconds_(sum|count)\{operation="([^"]+)"\} (\S+)$',
    re.M,
)


def _acme_seconds(metrics_port: int) -> dict[str, float]:
    """The operator's own ACME time so far (its histogram's sums), by operation."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return {f"{op} {kind}": float(v) for kind, op, v in _ACME_SUM.findall(text)}


def _acme_total(metrics_port: int) -> float:
    return sum(v for k, v in _acme_seconds(metrics_port).items() if k.endswith(" sum"))


def _timeline(
    bed: Bed, mark: int, names: list[str], latencies: list[float], acme: list[float]
) -> dict[str, list[float]]:
    """Where each round's time went, from the servers' own clocks: from the benchmark's
    create (the audit log) until the operator's first request, the operator's API requests
    (the sum of their server-side durations, Lease renewals left out), ACME (the operator's
    histogram: its HTTP requests), and the rest (S3, the waits between ACME polls, the
    operator's own CPU)."""
    created = {
        e["objectRef"].get("name"): seconds(e["requestReceivedTimestamp"])
        for e in bed.audit.events(mark, BENCH_USER)
        if e.get("verb") == "create" and e["objectRef"].get("resource") == "managedcertificates"
    }
    operator = [
        e
        for e in bed.audit.events(mark, ADMIN_USER, exclude_agents=("kubectl",))
        if e.get("objectRef", {}).get("resource") != "leases"
    ]
    parts: dict[str, list[float]] = {
        "until the operator's first request": [],
        "API requests (server time)": [],
        "ACME": [],
        "the rest (S3, waits between ACME polls, CPU)": [],
    }
    for name, latency, acme_seconds in zip(names, latencies, acme, strict=True):
        start = created[name]
        within = [
            e
            for e in operator
            if start <= seconds(e["requestReceivedTimestamp"]) <= start + latency
        ]
        first = min((seconds(e["requestReceivedTimestamp"]) for e in within), default=start)
        api = sum(
            seconds(e["stageTimestamp"]) - seconds(e["requestReceivedTimestamp"]) for e in within
        )
        parts["until the operator's first request"].append(first - start)
        parts["API requests (server time)"].append(api)
        parts["ACME"].append(acme_seconds)
        parts["the rest (S3, waits between ACME polls, CPU)"].append(
            latency - (first - start) - api - acme_seconds
        )
    return parts


def run(bed: Bed, report: Report, rounds: int) -> None:
    bed.namespace(NAMESPACE)
    operator = bed.start_operator()
    baselines = AcmeBaselines(bed.ca, bed.challenges)
    assert bed.install.metrics_port is not None
    # Not timed: the account registration, the first connections, Python's imports.
    warm = f"warm-{secrets.token_hex(3)}"
    watch = ReadyWatch(bed.api, NAMESPACE)
    bed.api.create(bed.automatic(NAMESPACE, warm, f"{warm}.certfleet.test"))
    watch.wait([warm], timeout=60)
    baselines.floor()
    ours: list[float] = []
    floor: list[float] = []
    library: list[float] = []
    acme_before = _acme_seconds(bed.install.metrics_port)
    marks = bed.marks()
    orders_before = bed.ca.orders_created()
    names: list[str] = []
    acme_rounds: list[float] = []
    for index in range(rounds):
        name = f"apply-{index}-{secrets.token_hex(3)}"
        names.append(name)
        before = _acme_total(bed.install.metrics_port)
        started = time.monotonic()
        bed.api.create(bed.automatic(NAMESPACE, name, f"{name}.certfleet.test"))
        ours.append(watch.wait([name], timeout=60)[name] - started)
        acme_rounds.append(_acme_total(bed.install.metrics_port) - before)
        started = time.monotonic()
        baselines.floor()
        floor.append(time.monotonic() - started)
        started = time.monotonic()
        baselines.poll_and_finalize()
        library.append(time.monotonic() - started)
    api, s3 = bed.operator_requests(marks)
    timeline = _timeline(bed, marks[0], names, ours, acme_rounds)
    acme_after = _acme_seconds(bed.install.metrics_port)
    orders = bed.ca.orders_created() - orders_before
    watch.close()
    assert operator.alive(), "the operator exited:\n" + operator.log_tail()
    bed.install.stop_operator()
    assert orders == 3 * rounds, f"{orders} orders for {rounds} rounds of three"
    acme = {k: acme_after[k] - acme_before.get(k, 0.0) for k in acme_after}
    mine, base, lib = median(ours), median(floor), median(library)
    report.add(
        Figure(
            SECTION,
            f"median of {rounds}",
            mine * 1000,
            "ms",
            "the protocol floor",
            mine / base,
            "<= 1.5x the floor",
        )
    )
    report.add(
        Figure(
            SECTION,
            f"max of {rounds}",
            max(ours) * 1000,
            "ms",
            "the floor's max",
            max(ours) / max(floor),
        )
    )
    report.add(
        Figure(SECTION, "protocol floor, median", base * 1000, "ms", "acme primitives, 20 ms polls")
    )
    report.add(Figure(SECTION, "poll_and_finalize, median", lib * 1000, "ms"))
    report.add(
        Figure(
            SECTION,
            "median against poll_and_finalize",
            mine * 1000,
            "ms",
            "poll_and_finalize",
            mine / lib,
        )
    )
    for part, values in timeline.items():
        report.add(Figure(SECTION, f"where it goes: {part}, median", median(values) * 1000, "ms"))
    report.add(
        Figure(
            SECTION,
            "API requests per certificate",
            api.without("leases").per(rounds),
            "requests",
            "without the Lease renewals",
        )
    )
    report.add(Figure(SECTION, "S3 requests per certificate", s3.per(rounds), "requests"))
    report.details[SECTION] = {
        "operator_ms": ms(ours),
        "floor_ms": ms(floor),
        "poll_and_finalize_ms": ms(library),
        "acme_seconds_by_operation": acme,
        "api_requests": dict(api.kinds),
        "s3_requests": dict(s3.kinds),
        "orders": orders,
        "timeline_ms": {part: ms(values) for part, values in timeline.items()},
    }
