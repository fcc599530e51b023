"""Query-budget benchmark: health and heartbeat latency while the worst fuzz queries run.

A real `outpost server` (`--query-memory 256MiB`) with a registered worker and a few
thousand heartbeats. Baseline: health and heartbeat latency on the idle server. Then
the worst cases of tests/telemetry/budget_fuzz.py run concurrently (each with a 5 s
deadline) while health is polled every 50 ms and a heartbeat posted every 250 ms.
Prints p50/p99/max for both phases, each query's status and time, and the server's
peak RSS. Under a minute.

    .venv/bin/python bench/query_budget.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from outpost import contract  # noqa: E402
from tests.helpers.procs import Agent, Server  # noqa: E402  (shared process harness)
from tests.telemetry.budget_fuzz import CASES, WORST  # noqa: E402

DEADLINE_S = 5.0
ROWS = 3000


def _ms(values: list[float]) -> str:
    if not values:
        return "n=0"
    v = sorted(values)
    p99 = v[min(len(v) - 1, int(len(v) * 0.99))]
    return f"n={len(v)} p50={statistics.median(v) * 1000:.1f} ms p99={p99 * 1000:.1f} ms max={v[-1] * 1000:.1f} ms"


def _peak_rss(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return f"{int(line.split()[1]) // 1024} MiB"
    return "?"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp) / "server", extra=["--query-memory", "256MiB"]).start()
        try:
            agent = Agent(server, Path(tmp) / "state", "g1", "w1")
            agent.register()
            credential = (Path(tmp) / "state" / "credential").read_text().strip()
            worker = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {credential}"}, timeout=30)
            plain = httpx.Client(base_url=server.url, timeout=30)

            def beat(n: int = 1) -> float:
                now = datetime.now(UTC).isoformat()
                rows = [{"TimeGenerated": now, "HeartbeatId": str(uuid.uuid4())} for _ in range(n)]
                started = time.monotonic()
                r = worker.post(contract.AGENT_HEARTBEAT, json={"rows": rows})
                assert r.status_code == 200, r.text
                return time.monotonic() - started

            def health() -> float:
                started = time.monotonic()
                assert plain.get(contract.HEALTH).status_code == 200
                return time.monotonic() - started

            beat(ROWS)
            idle_h = [health() for _ in range(40)]
            idle_b = [beat() for _ in range(20)]

            queries = dict(CASES)
            results: dict[str, tuple[int, float]] = {}

            def run(name: str) -> None:
                started = time.monotonic()
                with server.client() as c:
                    r = c.post("/api/v1/query", json={"query": queries[name], "timeout_s": DEADLINE_S}, timeout=60)
                results[name] = (r.status_code, time.monotonic() - started)

            threads = [threading.Thread(target=run, args=(n,)) for n in WORST]
            for t in threads:
                t.start()
            busy_h: list[float] = []
            busy_b: list[float] = []
            last_beat = 0.0
            while any(t.is_alive() for t in threads):
                busy_h.append(health())
                if time.monotonic() - last_beat > 0.25:
                    busy_b.append(beat())
                    last_beat = time.monotonic()
                time.sleep(0.05)
            for t in threads:
                t.join()
            print(f"idle   health    {_ms(idle_h)}")
            print(f"idle   heartbeat {_ms(idle_b)}")
            print(f"busy   health    {_ms(busy_h)}")
            print(f"busy   heartbeat {_ms(busy_b)}")
            for name in WORST:
                status, took = results[name]
                print(f"query  {name:<22} {status}  {took:.2f} s (deadline {DEADLINE_S:g} s)")
            assert server.proc is not None
            print(f"server peak RSS {_peak_rss(server.proc.pid)}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
