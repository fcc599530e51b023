"""Per-job cost of the job sandbox: a job cgroup (create, join, account, remove) against a bare start.

Each round starts `/bin/true` the way the agent starts a runbook (Popen, then wait4 for its
rusage), once bare and once confined in a per-job cgroup (agent/limits.py: mkdir in each
hierarchy, the /bin/sh join prefix, counters read, cgroup removed), alternating so load hits
both alike. The baseline (bare) is measured in the same run; the ratio is what to read.

    .venv/bin/python bench/sandbox.py              # 40 rounds, medians
    .venv/bin/python bench/sandbox.py --limits     # with memory, CPU and process limits written
    .venv/bin/python bench/sandbox.py --switch-user outpost-runbook   # how a root agent becomes the runbook user

`--switch-user` compares, in a process the size of an agent (60 MB resident: fork() copies its
page tables, vfork() does not), a start as root through `setpriv --pdeathsig` (the baseline),
the user switch by Popen(user=, group=, extra_groups=) (which makes CPython fork() instead of
vfork()), and the switch by setpriv's own --reuid/--regid/--groups in the exec it makes anyway.

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
from agent.runtime import RunAsUser  # noqa: E402
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


def switch_user(name: str, rounds: int) -> int:
    import shutil

    from agent.runtime import RuntimeRefusal, resolve_run_as

    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        print("--switch-user needs root and util-linux setpriv", file=sys.stderr)
        return 2
    try:
        user = resolve_run_as(name, None, "bench")
    except RuntimeRefusal as exc:  # no such user, or root
        print(f"--switch-user {name}: {exc}", file=sys.stderr)
        return 2
    ballast = bytearray(60 * 1024 * 1024)
    for i in range(0, len(ballast), 4096):  # resident, like an agent's heap
        ballast[i] = 1
    base = [setpriv, "--pdeathsig", "KILL", "--", TRUE]
    ways = {
        "as root (baseline)": lambda: start(base),
        "Popen(user=) switch": lambda: start_as(base, user),
        "setpriv --reuid switch": lambda: start([setpriv, "--pdeathsig", "KILL", *user.setpriv_args(), "--", TRUE]),
    }
    times: dict[str, list[float]] = {k: [] for k in ways}
    for _ in range(max(1, rounds)):
        for what, run in ways.items():
            times[what].append(run())
    b = statistics.median(times["as root (baseline)"])
    for what, values in times.items():
        m = statistics.median(values)
        print(f"{what:24} {m * 1000:7.2f} ms (median of {len(values)})  ratio {m / b:.2f}x")
    return 0


def start_as(argv: list[str], user: RunAsUser) -> float:
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
        user=user.uid,
        group=user.gid,
        extra_groups=user.groups,
    )
    os.wait4(proc.pid, 0)
    proc.returncode = 0
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--switch-user", metavar="NAME", help="compare the ways a root agent becomes NAME")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--limits", action="store_true", help="write memory, CPU and process limits too")
    args = parser.parse_args()
    if args.switch_user:
        return switch_user(args.switch_user, args.rounds)
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
