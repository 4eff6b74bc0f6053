"""apply -> Ready of one AUTOMATIC HTTP-01 certificate, interleaved with the protocol floor and
poll_and_finalize on the same pebble, so all three see the same machine load."""

from __future__ import annotations

import re
import secrets
import time
import urllib.request

from bench.acme_floor import AcmeBaselines
from bench.bed import Bed
from bench.figures import Figure, Report, median, ms
from bench.kube_api import ReadyWatch

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
    for index in range(rounds):
        name = f"apply-{index}-{secrets.token_hex(3)}"
        started = time.monotonic()
        bed.api.create(bed.automatic(NAMESPACE, name, f"{name}.certfleet.test"))
        ours.append(watch.wait([name], timeout=60)[name] - started)
        started = time.monotonic()
        baselines.floor()
        floor.append(time.monotonic() - started)
        started = time.monotonic()
        baselines.poll_and_finalize()
        library.append(time.monotonic() - started)
    api, s3 = bed.operator_requests(marks)
    acme_after = _acme_seconds(bed.install.metrics_port)
    orders = bed.ca.orders_created() - orders_before
    watch.close()
    assert operator.alive(), "the operator exited:\n" + operator.log_tail()
    bed.install.stop_operator()
    assert orders == 3 * rounds, f"{orders} orders for {rounds} rounds of three"
    acme = {k: acme_after[k] - acme_before.get(k, 0.0) for k in acme_after}
    acme_ms = sum(v for k, v in acme.items() if k.endswith(" sum")) * 1000 / rounds
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
    report.add(
        Figure(
            SECTION,
            "of which ACME (operator's histogram)",
            acme_ms,
            "ms",
            "the operator's median",
            acme_ms / 1000 / mine,
        )
    )
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
    }
