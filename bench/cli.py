"""CLI start-up benchmark: `outpost --help`, `--version` and `job list` against `python -c pass`.

Each command runs as a new process, as a user types it; `job list` asks a real local
`outpost server`. The baseline, the interpreter starting and exiting, is measured in the
same run, so the ratio holds on a busy machine where the absolute times do not.

    .venv/bin/python bench/cli.py            # 7 runs of each, median
    .venv/bin/python bench/cli.py --runs 15

Target on the 2-core reference machine: <= 0.25 s for each.
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
from tests.helpers.procs import OUTPOST, Server  # noqa: E402  (shared process harness)

TARGET_S = 0.25


def median_seconds(args: list[str], runs: int, env: dict[str, str]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = subprocess.run(args, capture_output=True, env=env, timeout=60)
        times.append(time.perf_counter() - start)
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(args)} failed: {result.stderr.decode()[-300:]}")
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="outpost-bench-cli-") as tmp:
        server = Server(Path(tmp) / "data").start(timeout=120)  # a busy machine starts it slowly
        try:
            env = {**os.environ, **server.env()}
            rows = [("python -c pass", [sys.executable, "-c", "pass"])]
            rows += [(f"outpost {' '.join(a)}", [*OUTPOST, *a]) for a in (["--help"], ["--version"], ["job", "list"])]
            results = [(label, median_seconds(args, opts.runs, env)) for label, args in rows]
        finally:
            server.stop()
    base = results[0][1]
    print(f"{'command':<22} {'median':>8} {'x pass':>7}  (target <= {TARGET_S} s; {opts.runs} runs each)")
    for label, seconds in results:
        verdict = "" if label.startswith("python") else ("ok" if seconds <= TARGET_S else "over")
        print(f"{label:<22} {seconds:>7.3f}s {seconds / base:>6.1f}x  {verdict}")


if __name__ == "__main__":
    main()
