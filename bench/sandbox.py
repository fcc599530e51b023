"""Per-job cost of the job sandbox: a job cgroup (create, join, account, remove) against a bare start.

Each round starts `/bin/true` the way the agent starts a runbook (Popen, then wait4 for its
rusage), once bare and once confined in a per-job cgroup (agent/limits.py: mkdir in each
hierarchy, the /bin/sh join prefix, counters read, cgroup removed), alternating so load hits
both alike. The baseline (bare) is measured in the same run; the ratio is what to read.

    .venv/bin/python bench/sandbox.py              # 40 rounds, medians
    .venv/bin/python bench/sandbox.py --limits     # with memory, CPU and process limits written

Needs root and writable cgroup v1 hierarchies or a v2 one (otherwise it says so and exits 2).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from agent import limits, resources  # noqa: E402
from outpost.contract import JobLimits  # noqa: E402

TRUE = "/bin/true"


def start(argv: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True)
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    resources.from_rusage(ru, time.perf_counter() - t0, proc.returncode)
    return time.perf_counter() - t0


def confined(enforcement: limits.Enforcement, job_limits: JobLimits | None) -> float:
    t0 = time.perf_counter()
    conf = enforcement.confine(str(uuid.uuid4()), job_limits, None)
    try:
        proc = subprocess.Popen(
            conf.wrap([TRUE]), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True
        )
        _, status, ru = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        conf.account(resources.from_rusage(ru, time.perf_counter() - t0, proc.returncode))
    finally:
        conf.close()
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--limits", action="store_true", help="write memory, CPU and process limits too")
    args = parser.parse_args()
    enforcement = limits.detect()
    if enforcement.mechanism not in ("cgroup v1", "cgroup v2"):
        print(f"no job cgroups here: {enforcement.why}", file=sys.stderr)
        return 2
    job_limits = JobLimits(memory_mb=256, cpu_percent=50, max_processes=64) if args.limits else None
    bare: list[float] = []
    cgroup: list[float] = []
    for _ in range(max(1, args.rounds)):
        bare.append(start([TRUE]))
        cgroup.append(confined(enforcement, job_limits))
    b, c = statistics.median(bare), statistics.median(cgroup)
    what = "cgroup + limits" if args.limits else "cgroup"
    print(f"bare start + wait4:   {b * 1000:7.2f} ms (median of {len(bare)})")
    print(f"{what + ' start:':<21} {c * 1000:7.2f} ms")
    print(f"ratio {what} / bare: {c / b:.2f}x  (+{(c - b) * 1000:.2f} ms per job)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
