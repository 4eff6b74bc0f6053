"""Cold start, restart and idle at N certificates already valid in S3 (published by certfleet's
own datastore code before the operator starts): time to all Ready, the operator's peak RSS and
CPU, API and S3 requests per certificate (counted at the servers), one new certificate applied
during the cold start; then a restart with nothing changed, and an idle period."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from bench.bed import Bed, ProcessStats
from bench.counters import Tally
from bench.figures import Figure, Report
from bench.kube_api import ReadyWatch, is_ready
from bench.operator_metrics import ready_names
from testbed.waiting import wait_for

NAMESPACE = "bench-cold"
RECHECK_SECONDS = 30.0  # the idle period's recheck interval (the default is 3,600 s)
IDLE_SECONDS = 60.0
DEFAULT_RECHECK_SECONDS = 3600.0


def _poll_interval(n: int) -> float:
    # A scrape renders every certificate's series: rarer at scale, to cost the operator little.
    return 0.25 if n <= 200 else 0.5 if n <= 2000 else 1.0


def _until_all_ready(
    bed: Bed,
    names: set[str],
    started: float,
    timeout: float,
    at_first: Callable[[], object] = lambda: None,
) -> tuple[float, float]:
    """Seconds from `started` until the operator's metrics say every one of `names` is
    Ready, and until the first was (when `at_first` runs)."""
    port = bed.install.metrics_port
    assert port is not None
    first: list[float] = []

    operator = bed.install.operator
    assert operator is not None

    def all_ready() -> bool:
        if not operator.alive():
            raise AssertionError("the operator exited:\n" + operator.log_tail(20))
        ready = ready_names(port, NAMESPACE)
        if ready and not first:
            first.append(time.monotonic() - started)
            at_first()
        return names <= ready

    wait_for(
        lambda: f"{len(names)} certificates Ready in the operator's metrics",
        all_ready,
        timeout=timeout,
        interval=_poll_interval(len(names)),
        retry_on=(OSError,),
    )
    return time.monotonic() - started, first[0]


def _in_parallel(work: Callable[[int], object], count: int) -> None:
    with ThreadPoolExecutor(8) as pool:
        for _ in pool.map(work, range(count)):
            pass


def _requests(report: Report, section: str, api: Tally, s3: Tally, n: int, what: str) -> None:
    report.add(
        Figure(
            section,
            f"API requests per certificate{what}",
            api.without("leases").per(n),
            "requests",
            "without the Lease renewals",
        )
    )
    report.add(Figure(section, f"S3 requests per certificate{what}", s3.per(n), "requests"))


def run(bed: Bed, report: Report, n: int) -> None:
    section = f"cold start N={n}"
    bed.namespace(NAMESPACE)
    names = [f"cold-{i}" for i in range(n)]
    print(f"  publishing {n} certificates to S3 and applying their resources", flush=True)
    _in_parallel(lambda i: bed.publish(f"{names[i]}.certfleet.test"), n)
    _in_parallel(
        lambda i: bed.api.create(bed.automatic(NAMESPACE, names[i], f"{names[i]}.certfleet.test")),
        n,
    )
    timeout = 120 + n * 0.5
    newcomer = f"new-{secrets.token_hex(3)}"
    watch = ReadyWatch(bed.api, NAMESPACE, newcomer)
    orders = bed.ca.orders_created()
    apiserver = ProcessStats(bed.plane.apiserver.pid) if bed.plane.apiserver else None
    apiserver_cpu = apiserver.cpu_seconds() if apiserver else 0.0
    marks = bed.marks()

    applied: list[float] = []

    def apply_newcomer() -> None:
        # Once the cold start is under way (its first Ready): the operator has listed the
        # others, and this one comes as a watch event while they are reconciled.
        bed.api.create(bed.automatic(NAMESPACE, newcomer, f"{newcomer}.certfleet.test"))
        applied.append(time.monotonic())

    started = time.monotonic()
    operator = bed.start_operator()
    stats = ProcessStats(operator.pid)
    cold, cold_first = _until_all_ready(
        bed, {*names, newcomer}, started, timeout, at_first=apply_newcomer
    )
    newcomer_seconds = watch.wait([newcomer], timeout)[newcomer] - applied[0]
    watch.close()
    api, s3 = bed.operator_requests(marks)
    peak = stats.peak_rss_mib()
    cpu = stats.cpu_seconds()
    apiserver_cpu = (apiserver.cpu_seconds() - apiserver_cpu) if apiserver else 0.0
    new_orders = bed.ca.orders_created() - orders

    # Correctness at scale, from the API: every one Ready, none ordered but the newcomer.
    resources = bed.api.certificates(NAMESPACE)
    not_ready = [r["metadata"]["name"] for r in resources if not is_ready(r)]
    assert len(resources) == n + 1 and not not_ready, f"not Ready: {not_ready[:5]}"
    assert new_orders == 1, f"{new_orders} ACME orders; expected 1 (the newcomer's)"
    report.add(
        Figure(
            section,
            "all Ready after",
            cold,
            "s",
            f"{n / cold:.1f} certificates/s",
            goal="N=5,000 < 60 s",
        )
    )
    report.add(Figure(section, "the first Ready after", cold_first, "s"))
    report.add(
        Figure(
            section,
            "a new certificate applied at the first Ready: Ready after",
            newcomer_seconds,
            "s",
            goal="< 5 s",
        )
    )
    report.add(Figure(section, "operator peak RSS", peak, "MiB", goal="< 250 MiB at N=5,000"))
    report.add(
        Figure(
            section,
            "operator CPU per certificate",
            cpu * 1000 / n,
            "ms",
            f"kube-apiserver: {apiserver_cpu * 1000 / n:.0f} ms",
        )
    )
    _requests(report, section, api, s3, n + 1, "")
    report.details[section] = {
        "seconds": cold,
        "first_seconds": cold_first,
        "newcomer_seconds": newcomer_seconds,
        "peak_rss_mib": peak,
        "operator_cpu_seconds": cpu,
        "apiserver_cpu_seconds": apiserver_cpu,
        "api_requests": dict(api.kinds),
        "s3_requests": dict(s3.kinds),
        "acme_orders": new_orders,
    }

    # A restart with nothing changed, at the default recheck interval: what a restart costs
    # by itself (with a short interval the rechecks would begin during it).
    section = f"restart N={n}"
    bed.install.stop_operator()
    orders = bed.ca.orders_created()
    marks = bed.marks()
    started = time.monotonic()
    operator = bed.start_operator()
    restart, restart_first = _until_all_ready(bed, {*names, newcomer}, started, timeout)
    api, s3 = bed.operator_requests(marks)
    peak = ProcessStats(operator.pid).peak_rss_mib()
    report.add(
        Figure(
            section,
            "nothing changed: all Ready after",
            restart,
            "s",
            "the cold start",
            restart / cold,
            "< 20 s at N=5,000",
        )
    )
    report.add(Figure(section, "the first Ready after", restart_first, "s"))
    _requests(report, section, api, s3, n + 1, "")
    report.add(Figure(section, "the restarted operator's peak RSS", peak, "MiB"))
    report.details[section] = {
        "seconds": restart,
        "first_seconds": restart_first,
        "api_requests": dict(api.kinds),
        "s3_requests": dict(s3.kinds),
        "peak_rss_mib": peak,
    }

    # The idle period: restarted once more with rechecks every RECHECK_SECONDS, measured
    # once all are Ready again, so that it holds a few rechecks of every certificate.
    section = f"idle N={n}"
    bed.install.stop_operator()
    operator = bed.start_operator(f"--recheck-seconds={RECHECK_SECONDS:g}")
    _until_all_ready(bed, {*names, newcomer}, time.monotonic(), timeout)
    marks = bed.marks()
    idle_started = time.monotonic()
    time.sleep(IDLE_SECONDS)  # a measuring window, not a wait for a condition
    idle = time.monotonic() - idle_started
    api, s3 = bed.operator_requests(marks)
    assert bed.ca.orders_created() == orders, "an ACME order during the restart or idle"
    assert operator.alive(), "the operator exited:\n" + operator.log_tail()
    rechecks = idle / RECHECK_SECONDS
    what = f" per recheck ({idle:.0f} s, --recheck-seconds={RECHECK_SECONDS:g})"
    report.add(
        Figure(
            section,
            f"API requests per certificate{what}",
            api.without("leases").per(n + 1) / rechecks,
            "requests",
            "= per hour at the default",
        )
    )
    report.add(
        Figure(
            section,
            f"S3 requests per certificate{what}",
            s3.per(n + 1) / rechecks,
            "requests",
            "= per hour at the default",
        )
    )
    report.add(
        Figure(
            section,
            "the operator's peak RSS (its start and the idle period)",
            ProcessStats(operator.pid).peak_rss_mib(),
            "MiB",
        )
    )
    report.details[section] = {
        "seconds": idle,
        "recheck_seconds": RECHECK_SECONDS,
        "api_requests": dict(api.kinds),
        "s3_requests": dict(s3.kinds),
    }
    bed.install.stop_operator()
