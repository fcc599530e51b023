"""The ARM door's cost per call against /api/v1's, for the same reads on the same server.

Reads the same job (by name on ARM, by id on /api/v1), the runbook list and a job list page,
alternating the doors in rounds so load on a busy machine hits both alike; prints the median
per call and the ratio ARM / api-v1. Plain HTTP on 127.0.0.1, one keep-alive connection each.

    .venv/bin/python bench/arm.py              # 300 calls of each kind per door
    .venv/bin/python bench/arm.py --calls 1000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.helpers.procs import Server  # noqa: E402  (shared process harness)

ARM = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Automation/automationAccounts/outpost"
V = {"api-version": "2024-10-23"}


def timed(client: httpx.Client, path: str, params: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    r = client.get(path, params=params)
    elapsed = time.perf_counter() - start
    if r.status_code != 200:
        raise SystemExit(f"GET {path}: {r.status_code} {r.text[:200]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp) / "server").start()
        try:
            with server.client() as c:
                c.put("/api/v1/runbooks/bench/draft", json={"type": "bash", "content": "true\n"}).raise_for_status()
                c.post("/api/v1/runbooks/bench/publish").raise_for_status()
                # A group without workers: the jobs stay queued, which reads the same as any job.
                c.put(f"{ARM}/hybridRunbookWorkerGroups/bench", params=V, json={"properties": {}}).raise_for_status()
                name = str(uuid.uuid4())
                body = {"properties": {"runbook": {"name": "bench"}, "runOn": "bench"}}
                job_id = c.put(f"{ARM}/jobs/{name}", params=V, json=body).json()["properties"]["jobId"]
                for _ in range(49):
                    c.put(f"{ARM}/jobs/{uuid.uuid4()}", params=V, json=body).raise_for_status()
                kinds = {
                    "get job": ((f"/api/v1/jobs/{job_id}", None), (f"{ARM}/jobs/{name}", V)),
                    "list runbooks": (("/api/v1/runbooks", None), (f"{ARM}/runbooks", V)),
                    "list 50 jobs": (("/api/v1/jobs", {"limit": "50"}), (f"{ARM}/jobs", {**V, "$top": "50"})),
                }
                print(f"{'call':<16}{'api/v1 ms':>11}{'ARM ms':>9}{'ARM / api-v1':>14}")
                for kind, (v1, arm) in kinds.items():
                    v1_times, arm_times = [], []
                    for _ in range(args.calls):
                        v1_times.append(timed(c, *v1))
                        arm_times.append(timed(c, *arm))
                    a, b = statistics.median(v1_times), statistics.median(arm_times)
                    print(f"{kind:<16}{a * 1000:>11.2f}{b * 1000:>9.2f}{b / a:>14.2f}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
