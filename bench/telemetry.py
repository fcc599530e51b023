"""Collector benchmark: HTTP heartbeat ingest rate, KQL over many Heartbeat rows vs SQLite, RSS.

    .venv/bin/python -m bench.telemetry                 # 10 M rows (a few minutes)
    .venv/bin/python -m bench.telemetry --rows 1000000  # quicker

1. Sustained ingest through POST /api/v1/agent/heartbeat on a real uvicorn server
   (a child process), batches of --batch rows from --clients threads.
2. Stale-worker and hourly-count queries over --rows Heartbeat rows through the
   collector's KQL path, and the same SQL on SQLite (indexed on TimeGenerated)
   loaded with the same rows: each printed with the ratio SQLite / DuckDB.
3. Resident memory of the collector holding --rows rows.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from fastapi import HTTPException, Request

from outpost.observer import WorkerIdentity

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-worker-token"

QUERIES = {
    "stale workers": (
        "Heartbeat | summarize LastHeartbeat = max(TimeGenerated) by Computer | where LastHeartbeat < ago(5m)",
        "SELECT Computer, max(TimeGenerated) AS LastHeartbeat FROM Heartbeat GROUP BY Computer "
        "HAVING max(TimeGenerated) < ?",
    ),
    "hourly count (1 day)": (
        "Heartbeat | where TimeGenerated > ago(1d) | summarize count() by bin(TimeGenerated, 1h)",
        "SELECT strftime('%Y-%m-%d %H:00:00', TimeGenerated) AS h, count(*) FROM Heartbeat "
        "WHERE TimeGenerated > ? GROUP BY h",
    ),
}


def rss_mb(pid: int | None = None) -> float:
    path = f"/proc/{pid or 'self'}/status"
    for line in Path(path).read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# -- 1. HTTP ingest ------------------------------------------------------------------


def require_worker(request: Request) -> WorkerIdentity:
    if request.headers.get("authorization") != f"Bearer {TOKEN}":
        raise HTTPException(401, "bad token")
    return WorkerIdentity("bench", "bench-worker", "bench")


def require_admin(request: Request) -> None:
    raise HTTPException(401, "no admin in the benchmark")


def serve(data_dir: str, port: int) -> None:
    """Child process: the collector router behind a one-token worker auth."""
    import uvicorn
    from fastapi import FastAPI

    from telemetry.api import build_router
    from telemetry.collector import Collector

    collector = Collector(Path(data_dir))
    app = FastAPI()
    app.include_router(build_router(collector, require_admin=require_admin, require_worker=require_worker))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_ingest(seconds: float, batch: int, clients: int) -> tuple[float, float, float]:
    """Rows/s over HTTP, server RSS (MB), and server CPU µs per row (steadier than rows/s on a busy machine)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = tempfile.mkdtemp(prefix="outpost-bench-ingest-")
    proc = subprocess.Popen([sys.executable, "-m", "bench.telemetry", "--serve", data, str(port)], cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/metrics", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("benchmark server did not start") from None
                time.sleep(0.1)
        template = {
            "OSType": "Linux",
            "OSName": "Ubuntu",
            "OSMajorVersion": "22",
            "OSMinorVersion": "04",
            "Version": "0.1.0",
            "ComputerIP": "10.0.0.1",
            "SourceComputerId": str(uuid.uuid4()),
            "Category": "Direct Agent",
        }
        start = datetime.now(UTC)
        made = [0]

        def body() -> bytes:
            # As a fleet sends them: every row its own TimeGenerated, later batches later (each a distinct
            # time to parse; and the collector's dedupe memory forgets older times first, as in real life).
            k = made[0]
            made[0] += batch
            rows = [
                {
                    **template,
                    "TimeGenerated": (start + timedelta(microseconds=k + i)).isoformat(),
                    "HeartbeatId": uuid.uuid4().hex,
                }
                for i in range(batch)
            ]
            return json.dumps({"rows": rows}).encode()

        # Prepared outside the timed loop (fresh HeartbeatIds: a re-sent body would be deduplicated),
        # round-robin so that the clients together send times in order.
        per_client = int(seconds * 80_000 / batch / clients) + 2
        bodies: list[list[bytes]] = [[] for _ in range(clients)]
        for _ in range(per_client):
            for i in range(clients):
                bodies[i].append(body())
        sent = [0] * clients
        stop_at = time.monotonic() + seconds
        errors: list[str] = []

        def client(i: int) -> None:
            with httpx.Client(
                base_url=url,
                headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
                timeout=60,
            ) as c:
                k = 0
                while time.monotonic() < stop_at:
                    payload = bodies[i][k] if k < len(bodies[i]) else body()
                    r = c.post("/api/v1/agent/heartbeat", content=payload)
                    if r.status_code != 200:
                        errors.append(r.text[:200])
                        return
                    sent[i] += r.json()["accepted"]
                    k += 1

        cpu0 = cpu_seconds(proc.pid)
        started = time.monotonic()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        if errors:
            raise RuntimeError(f"ingest failed: {errors[0]}")
        cpu = cpu_seconds(proc.pid) - cpu0
        rows = sum(sent)
        return rows / elapsed, rss_mb(proc.pid), cpu / max(rows, 1) * 1e6
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# -- 2. queries over N rows ---------------------------------------------------------------


def generate(n_rows: int, workers: int, chunk: int):  # noqa: ANN201 - a generator of column batches
    """Heartbeats, one per worker per minute, newest at now; some workers stopped a while ago."""
    per_worker = max(1, n_rows // workers)
    now = datetime.now(UTC).replace(tzinfo=None)
    made = 0
    while made < n_rows:
        size = min(chunk, n_rows - made)
        times, computers, ids = [], [], []
        for j in range(made, made + size):
            w = j // per_worker % workers
            k = j % per_worker
            stale = w % 50 == 0  # 2 % of workers stopped an hour ago
            times.append(now - timedelta(minutes=per_worker - k + (60 if stale else 0)))
            computers.append(f"worker-{w:05d}")
            ids.append(f"{j:012x}")
        made += size
        yield times, computers, ids


def bench_queries(n_rows: int, workers: int) -> list[tuple[str, float, float]]:
    from telemetry.collector import Collector

    data = Path(tempfile.mkdtemp(prefix="outpost-bench-query-"))
    collector = Collector(data)
    sqlite_path = data / "baseline.sqlite"
    lite = sqlite3.connect(sqlite_path)
    lite.execute("PRAGMA journal_mode=WAL")
    lite.execute(
        "CREATE TABLE Heartbeat (TimeGenerated TEXT, Computer TEXT, Category TEXT, OSType TEXT, HeartbeatId TEXT)"
    )
    t0 = time.monotonic()
    for times, computers, ids in generate(n_rows, workers, 500_000):
        n = len(times)
        collector.store._insert_columns(  # the collector's columnar path, without the HTTP layer
            "Heartbeat", _columns(times, computers, ids, n), n
        )
        lite.executemany(
            "INSERT INTO Heartbeat VALUES (?, ?, 'Direct Agent', 'Linux', ?)",
            zip((t.isoformat(sep=" ") for t in times), computers, ids, strict=True),
        )
    lite.execute("CREATE INDEX hb_time ON Heartbeat (TimeGenerated)")
    lite.execute("CREATE INDEX hb_computer_time ON Heartbeat (Computer, TimeGenerated)")
    lite.commit()
    print(f"  loaded {n_rows:,} rows into DuckDB and SQLite in {time.monotonic() - t0:.0f} s", flush=True)
    collector.store.checkpoint()

    results = []
    now = datetime.now(UTC).replace(tzinfo=None)
    params = {
        "stale workers": (now - timedelta(minutes=5)).isoformat(sep=" "),
        "hourly count (1 day)": (now - timedelta(days=1)).isoformat(sep=" "),
    }
    for name, (kql_text, sql) in QUERIES.items():
        collector.query(kql_text)  # warm
        duck = min(_timed(lambda q=kql_text: collector.query(q)) for _ in range(3))
        lite_t = min(_timed(lambda s=sql, p=params[name]: lite.execute(s, (p,)).fetchall()) for _ in range(3))
        results.append((name, duck, lite_t))
    print(f"  collector RSS with {n_rows:,} rows: {rss_mb():.0f} MB", flush=True)
    lite.close()
    collector.close()
    return results


def _columns(times: list, computers: list, ids: list, n: int) -> list[list]:
    from telemetry.store import HEARTBEAT_COLUMNS

    fixed = {
        "Category": "Direct Agent",
        "OSType": "Linux",
        "OSName": "Ubuntu",
        "Type": "Heartbeat",
        "ComputerEnvironment": "Non-Azure",
        "WorkerGroup_s": "bench",
        "Version": "0.1.0",
    }
    received = datetime.now(UTC).replace(tzinfo=None)
    out = []
    for name, _ in HEARTBEAT_COLUMNS:
        if name == "TimeGenerated":
            out.append(times)
        elif name == "Computer":
            out.append(computers)
        elif name == "HeartbeatId":
            out.append(ids)
        elif name == "_TimeReceived":
            out.append([received] * n)
        else:
            out.append([fixed.get(name)] * n)
    return out


def _timed(fn) -> float:  # noqa: ANN001
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--workers", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=10.0, help="ingest duration")
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--serve", nargs=2, metavar=("DATA_DIR", "PORT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return
    print(f"outpost telemetry benchmark ({os.cpu_count()} CPUs)", flush=True)
    rate, server_rss, cpu_us = bench_ingest(args.seconds, args.batch, args.clients)
    print(
        f"heartbeat ingest over HTTP: {rate:,.0f} rows/s (batches of {args.batch}, {args.clients} clients;"
        f" target >= 50,000; server RSS {server_rss:.0f} MB; server CPU {cpu_us:.1f} us/row)",
        flush=True,
    )
    for name, duck, lite in bench_queries(args.rows, args.workers):
        print(
            f"{name:>22}: DuckDB+KQL {duck * 1000:7.1f} ms   SQLite {lite * 1000:8.1f} ms   "
            f"ratio {lite / duck:5.1f}x faster   (target <= 500 ms)",
            flush=True,
        )


if __name__ == "__main__":
    main()
