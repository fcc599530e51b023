"""The collector's door for replicas, over real HTTP: auth, bad input, at-most-once per record."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from telemetry.collector import Collector
from telemetry.forwarding import FORWARD, Forwarder
from telemetry.replica_ingest import build_replica_ingest_router
from telemetry.standalone import admin_dependency
from tests.helpers.procs import wait_until
from tests.telemetry.server import free_port

TOKEN = "replica-secret"


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Collector]:
    c = Collector(tmp_path / "collector")
    yield c
    c.close()


@pytest.fixture
def url(collector: Collector) -> Iterator[str]:
    import threading
    import time

    import uvicorn

    app = FastAPI()
    app.include_router(build_replica_ingest_router(collector, admin_dependency(None, TOKEN)))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{server.config.port}"
    server.should_exit = True
    thread.join(timeout=10)


def _joblog(seq: int, job: str) -> dict:
    row = {"TimeGenerated": datetime.now(UTC).isoformat(), "Category": "JobLogs", "JobId_g": job, "ResultType": "New"}
    return {"seq": seq, "record": {"kind": "rows", "table": "AzureDiagnostics", "rows": [row]}}


def test_a_resent_batch_is_stored_once(collector: Collector, url: str) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    body = {"replica": "r1", "records": [_joblog(1, "j1"), _joblog(2, "j2")]}
    first = httpx.post(url + FORWARD, json=body, headers=auth)
    assert first.status_code == 200 and first.json()["applied"] == 2, first.text
    again = httpx.post(url + FORWARD, json=body, headers=auth)  # the answer was lost: the replica re-sends
    assert again.json() == {"watermark": 2, "applied": 0, "duplicates": 2, "rejected": []}
    # Another replica's seq numbers are its own.
    other = httpx.post(url + FORWARD, json={"replica": "r2", "records": [_joblog(1, "j3")]}, headers=auth)
    assert other.json()["applied"] == 1
    assert collector.query("AzureDiagnostics | count").rows == [[3]]
    # A bad record is named and passed over, so it cannot block the replica's buffer.
    bad = {"seq": 3, "record": {"kind": "rows", "table": "NoSuchTable", "rows": []}}
    mixed = httpx.post(url + FORWARD, json={"replica": "r1", "records": [bad, _joblog(4, "j4")]}, headers=auth)
    assert mixed.json()["applied"] == 1 and mixed.json()["rejected"][0]["seq"] == 3
    assert "NoSuchTable" in mixed.json()["rejected"][0]["error"]
    assert collector.query("AzureDiagnostics | count").rows == [[4]]


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({}, {"replica": "r", "records": []}, 401),
        ({"Authorization": "Bearer wrong"}, {"replica": "r", "records": []}, 401),
        ({"Authorization": f"Bearer {TOKEN}"}, {"records": []}, 400),
        ({"Authorization": f"Bearer {TOKEN}"}, {"replica": "r", "records": [{"seq": 0, "record": {}}]}, 400),
        ({"Authorization": f"Bearer {TOKEN}"}, {"replica": "r", "records": "x"}, 400),
    ],
)
def test_forward_needs_the_replica_token_and_a_valid_body(url: str, headers: dict, body: dict, status: int) -> None:
    r = httpx.post(url + FORWARD, json=body, headers=headers)
    assert r.status_code == status, r.text
    assert r.json()["detail"]


def test_forwarder_buffers_until_the_collector_answers_then_sends_in_order(tmp_path: Path) -> None:
    """The replica side against a real collector that starts late: nothing lost, nothing twice."""
    port = free_port()
    fwd = Forwarder(tmp_path / "replica", f"http://127.0.0.1:{port}", token=TOKEN)
    fwd.start()
    try:
        for i in range(5):
            fwd.ingest_heartbeats(
                [{"TimeGenerated": datetime.now(UTC).isoformat(), "HeartbeatId": f"hb-{i}"}], worker="w1", group="g"
            )
        fwd.ingest_heartbeats([{"TimeGenerated": datetime.now(UTC).isoformat()}], worker="w1", group="g")  # no id
        wait_until(lambda: fwd.failing, 10, 0.05, "the forwarder to notice the collector is down")
        assert fwd.spool.count == 6
        collector = Collector(tmp_path / "collector")
        try:
            import threading

            import uvicorn

            app = FastAPI()
            app.include_router(build_replica_ingest_router(collector, admin_dependency(TOKEN)))
            server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
            thread = threading.Thread(target=server.run, daemon=True)
            thread.start()
            try:
                wait_until(lambda: fwd.spool.count == 0, 30, 0.1, "the buffer to drain")
                assert fwd.failing is None
                rows = collector.query("Heartbeat | order by TimeGenerated asc | project HeartbeatId").rows
                assert [r[0] for r in rows][:5] == [f"hb-{i}" for i in range(5)] and len(rows) == 6 and rows[5][0]
            finally:
                server.should_exit = True
                thread.join(timeout=10)
        finally:
            collector.close()
    finally:
        fwd.close()


def test_spool_is_bounded_drops_the_oldest_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from telemetry.spool import Spool

    spool = Spool(tmp_path / "spool.sqlite", max_bytes=10_000)
    for i in range(100):
        spool.append([b"x" * 500 + str(i).encode()])
    assert spool.bytes <= 10_000 and spool.dropped > 0
    assert "dropped the" in caplog.text and "oldest records" in caplog.text
    kept = spool.peek(1000, 10**9)
    assert kept[-1][1].endswith(b"99") and [s for s, _ in kept] == sorted(s for s, _ in kept)
    replica = spool.replica
    spool.ack(kept[-1][0])
    spool.close()
    # Survives a restart: same replica id, seq keeps rising.
    again = Spool(tmp_path / "spool.sqlite", max_bytes=10_000)
    assert again.replica == replica and again.count == 0
    assert again.append([b"next"]) > kept[-1][0]
    again.close()


def test_heartbeats_of_many_workers_in_one_request(collector: Collector, url: str) -> None:
    now = datetime.now(UTC).isoformat()

    def beat(seq: int, worker: str, hid: str) -> dict:
        rec = {"kind": "heartbeat", "worker": worker, "group": "g", "received": now}
        return {"seq": seq, "record": {**rec, "rows": [{"TimeGenerated": now, "HeartbeatId": hid}]}}

    # w1's agent re-sent one heartbeat through another replica: same HeartbeatId, stored once.
    records = [beat(1, "w1", "a"), beat(2, "w2", "b"), beat(3, "w1", "a"), beat(4, "w3", "c")]
    bad = {"seq": 5, "record": {"kind": "heartbeat", "worker": "w4", "group": "g", "rows": [{"TimeGenerated": 1}]}}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = httpx.post(url + FORWARD, json={"replica": "r", "records": [*records, bad]}, headers=auth)
    assert r.status_code == 200 and [x["seq"] for x in r.json()["rejected"]] == [5], r.text
    rows = collector.query("Heartbeat | project Computer, HeartbeatId, WorkerGroup_s | order by Computer asc").rows
    assert rows == [["w1", "a", "g"], ["w2", "b", "g"], ["w3", "c", "g"]]
    assert 'outpost_worker_up{group="g",worker="w3"} 1.0' in collector.metrics.render().decode()
