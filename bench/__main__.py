"""`make bench`: certfleet's benchmarks on the test bed's real servers, one run, every figure
against a baseline measured in the same run.

    PYTHONPATH=tests:. .venv/bin/python -m bench [--n N] [--fleet 10|30] [--only PART ...] [--keep]

BENCH_N sets the cold start's size (default 50), BENCH_FLEET the nodes of the fleet
(default 10). Prints the table, writes bench/results/latest.json. The benchmark asserts
correctness at scale (all Ready, no ACME order for a certificate already valid in S3); it
asserts no time.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import apply_ready, cold_start, fleet
from bench.bed import Bed
from bench.figures import Report

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
SECTIONS = ("apply", "cold", "fleet")


def main() -> int:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__)
    parser.add_argument("--n", type=int, default=int(os.environ.get("BENCH_N", "50")))
    parser.add_argument("--fleet", type=int, default=int(os.environ.get("BENCH_FLEET", "10")))
    parser.add_argument("--rounds", type=int, default=12, help="apply -> Ready samples")
    parser.add_argument("--only", nargs="*", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--s3-close-connections",
        action="store_true",
        help="versitygw closes every connection after its answer (its own default; S3 does not)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the servers' logs and data after a success"
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="certfleet-bench-"))
    print(f"bench: N={args.n}, fleet={args.fleet}, working in {workdir}", flush=True)
    report = Report()
    started = time.monotonic()
    with Bed(workdir, s3_keep_alive=not args.s3_close_connections) as bed:
        if "apply" in args.only:
            print("bench: apply -> Ready", flush=True)
            apply_ready.run(bed, report, args.rounds)
        if "cold" in args.only:
            print(f"bench: cold start, restart and idle at N={args.n}", flush=True)
            cold_start.run(bed, report, args.n)
        if "fleet" in args.only:
            print(f"bench: fleet of {args.fleet}", flush=True)
            fleet.run(bed, report, args.fleet)
    took = time.monotonic() - started
    run = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "n": args.n,
        "fleet": args.fleet,
        "seconds": round(took),
        "cpus": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "machine": platform.platform(),
        "python": platform.python_version(),
        "s3_keep_alive": not args.s3_close_connections,
    }
    report.write(args.output, run)
    if not args.keep:  # after a failure they stay, for its logs
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\n{report.table()}\n\nbench: {took:.0f} s; figures in {args.output}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
