"""Events-cap benchmark: how long one events request holds the server, and health latency meanwhile.

A real `outpost server` (SQLite) with one registered worker holding one job. Baseline: health
latency on the idle server. Then the worker posts event batches back to back, first small ones
(128 KiB), then ones at the contract's cap (`MAX_EVENTS_POST_BYTES`, 1 MiB), while health is
polled every 20 ms. Prints each phase's request time and health p50/p99/max, the ratio of health
p99 under cap-size batches to idle, and that a 7.3 MiB batch (the size that once held the loop
for 2 s) is refused with 413 before it is applied. Under a minute.

    .venv/bin/python bench/events_cap.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from outpost import contract  # noqa: E402
from tests.helpers.api import publish, start_job  # noqa: E402
from tests.helpers.procs import Agent, Server  # noqa: E402  (shared process harness)

RECORD_CHARS = 32 * 1024  # the agent's longest record (agent/classify.py)
REQUESTS = 12


def _stats(values: list[float]) -> tuple[float, float, float]:
    v = sorted(values)
    return statistics.median(v) * 1000, v[min(len(v) - 1, int(len(v) * 0.99))] * 1000, v[-1] * 1000


def _fmt(values: list[float]) -> str:
    p50, p99, top = _stats(values)
    return f"n={len(values)} p50={p50:.1f} ms p99={p99:.1f} ms max={top:.1f} ms"


def _body(job_id: str, first_seq: int, target_bytes: int) -> bytes:
    records, size, seq = [], 200, first_seq
    while True:
        record = {"seq": seq, "stream": "Output", "time": "2026-01-01T00:00:00+00:00", "text": "x" * RECORD_CHARS}
        grown = size + len(orjson.dumps(record)) + 1
        if grown > target_bytes:
            break
        records.append(record)
        size, seq = grown, seq + 1
    return orjson.dumps({"batches": [{"job_id": job_id, "records": records}]})


def _health_while(plain: httpx.Client, busy: threading.Event) -> list[float]:
    samples = []
    while busy.is_set():
        t = time.perf_counter()
        plain.get(contract.HEALTH)
        samples.append(time.perf_counter() - t)
        time.sleep(0.02)
    return samples


def _phase(worker: httpx.Client, plain: httpx.Client, job_id: str, seq: int, size: int) -> tuple[list, list, int]:
    busy = threading.Event()
    busy.set()
    health: list[float] = []
    sampler = threading.Thread(target=lambda: health.extend(_health_while(plain, busy)))
    sampler.start()
    posts = []
    try:
        for _ in range(REQUESTS):
            body = _body(job_id, seq, size)
            seq += len(orjson.loads(body)["batches"][0]["records"])
            t = time.perf_counter()
            r = worker.post(contract.AGENT_EVENTS, content=body, headers={"Content-Type": "application/json"})
            posts.append(time.perf_counter() - t)
            assert r.status_code == 200 and r.json()["results"][0]["ack"], r.text
    finally:
        busy.clear()
        sampler.join()
    return posts, health, seq


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp) / "server").start()
        try:
            agent = Agent(server, Path(tmp) / "state", "g1", "w1")
            agent.register()
            credential = (Path(tmp) / "state" / "credential").read_text().strip()
            worker = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {credential}"}, timeout=60)
            plain = httpx.Client(base_url=server.url, timeout=30)
            with server.client() as c:
                publish(c, "noisy", "echo hi\n")
                job_id = start_job(c, "noisy")
            claimed = worker.post(contract.AGENT_POLL, params={"wait": 5, "max": 1}, json={"held": []})
            assert claimed.status_code == 200, claimed.text

            idle_busy = threading.Event()
            idle_busy.set()
            threading.Timer(3.0, idle_busy.clear).start()
            idle = _health_while(plain, idle_busy)
            print(f"idle health:                {_fmt(idle)}")
            seq = 1 << 32
            for label, size in (
                ("128 KiB batches", 128 * 1024),
                ("1 MiB batches (the cap)", contract.MAX_EVENTS_POST_BYTES),
            ):
                posts, health, seq = _phase(worker, plain, job_id, seq, size)
                print(f"{label:<27} events POST {_fmt(posts)}")
                print(f"{'':<27} health      {_fmt(health)}")
            print(f"health p99 under 1 MiB batches / idle p99: x{_stats(health)[1] / _stats(idle)[1]:.2f}")
            big = _body(job_id, seq, int(7.3 * 1024 * 1024))
            t = time.perf_counter()
            r = worker.post(contract.AGENT_EVENTS, content=big, headers={"Content-Type": "application/json"})
            took = (time.perf_counter() - t) * 1000
            print(f"7.3 MiB batch: HTTP {r.status_code} in {took:.1f} ms: {r.json()['detail']}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
