"""CLI start-up benchmark: `outpost --help`, `--version` and `job list` against `python -c pass`.

Each command runs as a new process, as a user types it; `job list` asks a real local
`outpost server` holding 20 queued jobs, so it prints a real table. The baseline, the interpreter
starting and exiting, is measured in the same run, so the ratio holds on a busy machine where the
absolute times do not; each command's CPU time (user + system, from wait4) is shown too, which a
busy machine inflates far less than wall time.

    .venv/bin/python bench/cli.py            # 7 runs of each, median
    .venv/bin/python bench/cli.py --runs 15

Target on the 2-core reference machine: <= 0.25 s of CPU for each (the verdict column).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.helpers.api import publish, start_job  # noqa: E402
from tests.helpers.procs import OUTPOST, Agent, Server  # noqa: E402  (shared process harness)

TARGET_S = 0.25


def run_once(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds user+sys) of one run of `args` as a new process."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(args)} failed: {err.read().decode()[-300:]}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="outpost-bench-cli-") as tmp:
        server = Server(Path(tmp) / "data").start(timeout=120)  # a busy machine starts it slowly
        try:
            Agent(server, Path(tmp) / "worker", "bench", "bench1").register()  # a group, never polled
            with server.client() as c:  # queued: `job list` has rows to lay out
                publish(c, "bench-hello", "echo hi\n")
                for _ in range(20):
                    start_job(c, "bench-hello", group="bench")
            env = {**os.environ, **server.env()}
            rows = [("python -c pass", [sys.executable, "-c", "pass"])]
            rows += [(f"outpost {' '.join(a)}", [*OUTPOST, *a]) for a in (["--help"], ["--version"], ["job", "list"])]
            # Interleaved rounds: a burst of load from elsewhere hits every command alike.
            samples: dict[str, list[tuple[float, float]]] = {label: [] for label, _ in rows}
            for _ in range(opts.runs):
                for label, args in rows:
                    samples[label].append(run_once(args, env))
        finally:
            server.stop()
    wall = {label: statistics.median(w for w, _ in got) for label, got in samples.items()}
    cpu = {label: statistics.median(c for _, c in got) for label, got in samples.items()}
    base_wall, base_cpu = wall[rows[0][0]], cpu[rows[0][0]]
    header = f"{'command':<22} {'wall':>8} {'x pass':>7} {'cpu':>8} {'x pass':>7}"
    print(f"{header}  (target <= {TARGET_S} s CPU; {opts.runs} runs)")
    for label, _ in rows:
        verdict = "" if label.startswith("python") else ("ok" if cpu[label] <= TARGET_S else "over")
        print(
            f"{label:<22} {wall[label]:>7.3f}s {wall[label] / base_wall:>6.1f}x "
            f"{cpu[label]:>7.3f}s {cpu[label] / base_cpu:>6.1f}x  {verdict}"
        )
    print(f"load average now: {os.getloadavg()[0]:.1f} (the CPU column is the steadier one on a busy machine)")


if __name__ == "__main__":
    main()
