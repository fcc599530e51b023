"""Dispatch benchmark: job-created -> runbook-process-started latency and jobs/s.

Real `outpost server` and `outpost worker run` processes on 127.0.0.1. Each runbook
prints the wall-clock time it started; latency is that minus the job's created_at
(one machine, one clock). The baseline is measured in the same run: the same
workers polling every 30 s like the Azure Linux Hybrid Worker instead of holding a
long poll.

    .venv/bin/python bench/dispatch.py                 # SQLite and PostgreSQL (if reachable)
    .venv/bin/python bench/dispatch.py --jobs 1000 --workers 3 --backend sqlite

Targets on the 2-core reference machine: p50 <= 50 ms, p99 <= 250 ms, >= 100 bash
jobs/s, zero duplicates, agent idle RSS <= 60 MB.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.helpers.procs import Agent, Server, wait_until  # noqa: E402  (shared process harness)

RUNBOOKS = {
    "bash": ("bash", 'date +%s.%N\necho "id=$1"\n'),
    "python3": ("python3", "import sys, time\nprint(repr(time.time()))\nprint('id=' + sys.argv[1])\n"),
}
PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
FINAL = {"Completed", "Failed", "Stopped", "Suspended"}
# The test harness renews leases every 0.5 s and beats every 1 s so tests see changes fast;
# the benchmark measures the agent as shipped.
PRODUCTION_TIMERS = ["--lease-renew", "3", "--heartbeat-interval", "60"]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _latency_ms(client: httpx.Client, job_id: str) -> tuple[float, int]:
    """(created -> runbook started, in ms; extra lines or activations seen = duplicates)."""
    job = client.get(f"/api/v1/jobs/{job_id}").json()
    texts = [r["text"] for r in client.get(f"/api/v1/jobs/{job_id}/streams").json()["records"]]
    created = datetime.fromisoformat(job["created_at"]).timestamp()
    return (float(texts[0]) - created) * 1000, (len(texts) - 2) + (job["activations"] - 1)


def _wait_all(client: httpx.Client, runbook: str, ids: list[str]) -> list[dict]:
    """Wait for every job and return them. The wait must cost the server little, or it would be
    measured too: watch the newest job (they finish about in order), then list them all."""
    wanted = set(ids)

    def ended(job_id: str) -> bool:
        return client.get(f"/api/v1/jobs/{job_id}").json()["status"] in FINAL

    def finished() -> list[dict] | None:
        if not ended(ids[-1]):
            return None
        done = client.get("/api/v1/jobs", params={"runbook": runbook, "status": "Completed", "limit": 1000}).json()
        jobs = [j for j in done if j["id"] in wanted]
        return jobs if len(jobs) == len(wanted) else None

    return wait_until(finished, 600, 0.2, f"{len(ids)} {runbook} jobs to complete")


def latency_round(client: httpx.Client, runbook: str, jobs: int, gap_s: float = 0.05) -> dict[str, float]:
    """Jobs arriving one by one (not a backlog): what a waiting worker's pick-up costs."""
    ids = []
    for i in range(jobs):
        r = client.post(
            "/api/v1/jobs", json={"runbook": runbook, "run_on": "bench", "params": [{"name": None, "value": str(i)}]}
        )
        ids.append(r.json()["id"])
        time.sleep(gap_s)
    _wait_all(client, runbook, ids)
    measured = [_latency_ms(client, j) for j in ids]
    lat = [m[0] for m in measured]
    return {"p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "duplicates": sum(m[1] for m in measured)}


def throughput_round(client: httpx.Client, runbook: str, jobs: int, submitters: int = 8) -> dict[str, float]:
    """A burst of jobs: created as fast as 8 clients can, completed by the workers."""

    def submit(i: int) -> str:
        r = client.post(
            "/api/v1/jobs", json={"runbook": runbook, "run_on": "bench", "params": [{"name": None, "value": str(i)}]}
        )
        r.raise_for_status()
        return r.json()["id"]

    with ThreadPoolExecutor(submitters) as pool:
        ids = list(pool.map(submit, range(jobs)))
    done = _wait_all(client, runbook, ids)
    # From the first job's creation to the last one's end, by the server's own timestamps.
    first = min(datetime.fromisoformat(j["created_at"]) for j in done)
    last = max(datetime.fromisoformat(j["ended_at"]) for j in done)
    elapsed = (last - first).total_seconds()
    return {"jobs_per_s": jobs / elapsed, "duplicates": sum(_latency_ms(client, j)[1] for j in ids)}


def baseline_round(client: httpx.Client, runbook: str, jobs: int) -> dict[str, float]:
    """Jobs spread over time, picked up by workers that poll every 30 s."""
    latencies = []
    for i in range(jobs):
        r = client.post(
            "/api/v1/jobs",
            json={"runbook": runbook, "run_on": "bench-azure", "params": [{"name": None, "value": str(i)}]},
        )
        job_id = r.json()["id"]

        def completed(job_id: str = job_id) -> dict | None:
            job = client.get(f"/api/v1/jobs/{job_id}").json()
            return job if job["status"] == "Completed" else None

        job = wait_until(completed, 120, 0.2, "baseline job")
        recs = client.get(f"/api/v1/jobs/{job_id}/streams").json()["records"]
        latencies.append(float(recs[0]["text"]) - datetime.fromisoformat(job["created_at"]).timestamp())
        time.sleep(7.3 * (i + 1) % 11)  # land at different points of the poll cycle
    return {"p50_ms": pct(latencies, 50) * 1000, "p99_ms": pct(latencies, 99) * 1000}


def bench_backend(backend: str, args: argparse.Namespace, root: Path) -> None:
    db_url = None
    if backend == "postgres":
        import psycopg

        name = f"outpost_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        db_url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    server = Server(root / f"server-{backend}", database_url=db_url, extra=["--log-level", "warning"]).start()
    agents: list[Agent] = []
    try:
        for i in range(args.workers):
            a = Agent(
                server,
                root / f"{backend}-w{i}",
                "bench",
                f"{backend}-w{i}",
                ["--concurrency", str(args.concurrency), "--log-level", "warning", *PRODUCTION_TIMERS],
            )
            a.register()
            agents.append(a.start())
        for i in range(2):
            a = Agent(
                server,
                root / f"{backend}-az{i}",
                "bench-azure",
                f"{backend}-az{i}",
                ["--poll-hold", "0", "--poll-interval", "30", "--log-level", "warning", *PRODUCTION_TIMERS],
            )
            a.register()
            agents.append(a.start())
        with server.client() as c:
            for name, (rb_type, content) in RUNBOOKS.items():
                c.put(f"/api/v1/runbooks/{name}/draft", json={"type": rb_type, "content": content}).raise_for_status()
                c.post(f"/api/v1/runbooks/{name}/publish").raise_for_status()
            time.sleep(3)
            idle = max(rss_mb(a.proc.pid) for a in agents if a.proc)
            throughput_round(c, "bash", 20)  # warm-up
            print(f"\n== {backend}: {args.workers} workers x concurrency {args.concurrency}")
            print(f"agent idle RSS: {idle:.1f} MB (target <= 60 MB)")
            results = {}
            for name in RUNBOOKS:
                lat = latency_round(c, name, args.latency_jobs)
                thr = throughput_round(c, name, args.jobs)
                results[name] = lat
                print(
                    f"{name:8} latency p50 {lat['p50_ms']:6.1f} ms  p99 {lat['p99_ms']:6.1f} ms "
                    f"({args.latency_jobs} jobs, one every 50 ms);  {thr['jobs_per_s']:6.1f} jobs/s "
                    f"({args.jobs}-job burst);  duplicates {int(lat['duplicates'] + thr['duplicates'])}"
                )
            if args.baseline_jobs:
                base = baseline_round(c, "bash", args.baseline_jobs)
                print(
                    f"baseline (30 s interval polling, {args.baseline_jobs} bash jobs): p50 {base['p50_ms']:.0f} ms"
                    f"  p99 {base['p99_ms']:.0f} ms"
                )
                print(
                    f"ratio baseline/long-poll latency: p50 x{base['p50_ms'] / results['bash']['p50_ms']:.0f}"
                    f"  p99 x{base['p99_ms'] / results['bash']['p99_ms']:.0f}"
                )
    finally:
        for a in agents:
            a.stop()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--jobs", type=int, default=500, help="jobs in the throughput burst")
    parser.add_argument("--latency-jobs", type=int, default=100, help="jobs in the latency round")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--baseline-jobs", type=int, default=6, help="0 skips the 30 s polling baseline")
    args = parser.parse_args()
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    with tempfile.TemporaryDirectory(prefix="outpost-bench-") as tmp:
        for backend in backends:
            bench_backend(backend, args, Path(tmp))


if __name__ == "__main__":
    main()
