"""The collector over real HTTP: heartbeats (deduplicated, buffered by the agent), diagnose results,
KQL over /api/v1/query and `outpost query`, and the Prometheus exposition."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from agent.telemetry import HeartbeatSender
from outpost import contract
from outpost.http import make_client
from outpost.observer import GroupSnapshot, JobEvent, WorkerIdentity
from telemetry.collector import Collector
from tests.telemetry.server import ADMIN_TOKEN, free_port, serve

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Collector]:
    groups = [GroupSnapshot("linux", 2, 42.5, {"w1": 1, "w2": 1})]
    c = Collector(tmp_path / "data", snapshot=lambda: groups, stale_after_s=2.0)
    c.start()
    yield c
    c.close()


@pytest.fixture
def url(collector: Collector) -> Iterator[str]:
    with serve(collector) as base:
        yield base


def admin(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)


def worker(url: str, name: str = "w1") -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer worker-token-{name}"}, timeout=30)


def q(url: str, kql: str) -> dict:
    with admin(url) as c:
        r = c.post("/api/v1/query", json={"query": kql})
    assert r.status_code == 200, r.text
    return r.json()


def test_heartbeat_is_stored_once_and_queryable(url: str) -> None:
    row = {
        "TimeGenerated": datetime.now(UTC).isoformat(),
        "OSType": "Linux",
        "HeartbeatId": "hb-1",
        "Computer": "spoofed",
    }
    with worker(url) as c:
        first = c.post(contract.AGENT_HEARTBEAT, json={"rows": [row]})
        again = c.post(contract.AGENT_HEARTBEAT, json={"rows": [row]})  # an agent re-send
    assert first.json() == {"accepted": 1, "duplicates": 0}
    assert again.json() == {"accepted": 0, "duplicates": 1}
    out = q(url, "Heartbeat | summarize n = count(), latest = max(TimeGenerated) by Computer, WorkerGroup_s")
    assert out["columns"] == [
        {"name": "Computer", "type": "string"},
        {"name": "WorkerGroup_s", "type": "string"},
        {"name": "n", "type": "long"},
        {"name": "latest", "type": "datetime"},
    ]
    # Computer comes from the credential, not the body.
    assert [r[:3] for r in out["rows"]] == [["w1", "linux", 1]]
    assert out["rows"][0][3].endswith("Z")


def test_ingest_needs_worker_and_query_needs_admin(url: str) -> None:
    with httpx.Client(base_url=url) as anon:
        assert anon.post(contract.AGENT_HEARTBEAT, json={"rows": []}).status_code == 401
        assert anon.post("/api/v1/query", json={"query": "Heartbeat"}).status_code == 401
    with worker(url) as c:
        assert c.post("/api/v1/query", json={"query": "Heartbeat"}).status_code == 401


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (json.dumps({"rows": "x"}).encode(), '"rows"'),
        (json.dumps({"rows": [{"TimeGenerated": "yesterday"}]}).encode(), "TimeGenerated"),
        (json.dumps({"rows": [5]}).encode(), "rows[0]"),
    ],
)
def test_bad_heartbeat_is_a_clear_400(url: str, body: bytes, needle: str) -> None:
    with worker(url) as c:
        r = c.post(contract.AGENT_HEARTBEAT, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert needle in r.json()["detail"]


def test_oversized_body_is_413(url: str) -> None:
    with worker(url) as c:
        r = c.post(contract.AGENT_HEARTBEAT, content=b"x" * (8 * 1024 * 1024 + 1))
    assert r.status_code == 413


def test_bad_kql_names_the_position(url: str) -> None:
    with admin(url) as c:
        r = c.post("/api/v1/query", json={"query": "Heartbeat\n| where Computer == 'a'\n| summarize count() by X."})
        unknown = c.post("/api/v1/query", json={"query": "Syslog | take 1"})
        empty = c.post("/api/v1/query", json={"query": ""})
    assert r.status_code == 400
    body = r.json()
    assert body["error"] == "syntax_error" and body["line"] == 3 and "line 3" in body["detail"]
    assert unknown.status_code == 400 and unknown.json()["error"] == "unknown_table"
    assert "'Syslog'" in unknown.json()["detail"]
    assert empty.status_code == 400


def test_query_over_time_is_cancelled_and_ingest_keeps_going(collector: Collector, url: str) -> None:
    # A cross join that would run for minutes.
    slow = (
        "range x from 1 to 30000 step 1 | extend k = 1 | join kind=inner (range y from 1 to 30000 step 1"
        " | extend k = 1) on k | summarize count()"
    )
    result: dict = {}

    def run() -> None:
        with admin(url) as c:
            result["r"] = c.post("/api/v1/query", json={"query": slow, "timeout_s": 1.5})

    t = threading.Thread(target=run)
    started = time.monotonic()
    t.start()
    time.sleep(0.3)
    with worker(url) as c:  # ingestion is not blocked by the running query
        ok = c.post(
            contract.AGENT_HEARTBEAT,
            json={"rows": [{"TimeGenerated": datetime.now(UTC).isoformat(), "HeartbeatId": "during-query"}]},
        )
    assert ok.status_code == 200 and time.monotonic() - started < 1.5
    t.join(timeout=30)
    r = result["r"]
    assert r.status_code == 408 and r.json()["error"] == "timeout", r.text
    assert "1.5 s limit" in r.json()["detail"]
    assert time.monotonic() - started < 10


def test_heartbeat_sender_buffers_while_server_is_down_and_never_duplicates(
    tmp_path: Path, collector: Collector
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    client = make_client(base, token="worker-token-w2")
    sender = HeartbeatSender(
        tmp_path / "state", client, worker_name="w2", group="linux", interval_s=0.1, buffer_limit=5
    )
    # Server down: rows pile up on disk, bounded.
    for _ in range(7):
        sender.enqueue(sender.make_row())
        assert sender.flush() is False  # nothing listens on that port
    assert sender.buffered() == 5
    ids = [json.loads(x)["HeartbeatId"] for x in sender.buffer_path.read_text().splitlines()]
    with serve(collector) as live:
        sender.client = make_client(live, token="worker-token-w2")
        assert sender.flush() is True
        assert sender.buffered() == 0
        # A stale copy of the same rows (e.g. a crash before the buffer was rewritten) is re-sent:
        with worker(live, "w2") as c:
            rows = [{"TimeGenerated": datetime.now(UTC).isoformat(), "HeartbeatId": i} for i in ids]
            assert c.post(contract.AGENT_HEARTBEAT, json={"rows": rows}).json()["accepted"] == 0
        stop = threading.Event()
        t = threading.Thread(target=sender.run, args=(stop,), daemon=True)
        t.start()
        time.sleep(0.5)
        stop.set()
        t.join(timeout=10)
        out = q(
            live,
            "Heartbeat | where Computer == 'w2' | summarize n = count(), d = dcount(HeartbeatId),"
            " ids = dcount(SourceComputerId)",
        )
    n, distinct, source_ids = out["rows"][0]
    assert n == distinct and n >= 6  # 5 buffered + at least one live beat, none twice
    assert source_ids == 1  # stable per state dir
    assert (
        HeartbeatSender(tmp_path / "state", client, worker_name="w2", group="linux", interval_s=1).source_computer_id
        == sender.source_computer_id
    )


def test_heartbeat_survives_collector_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    c1 = Collector(data)
    row = {"TimeGenerated": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(), "HeartbeatId": "x1"}
    assert c1.ingest_heartbeats([row], worker="w1", group="g") == (1, 0)
    c1.close()
    c2 = Collector(data)
    try:
        assert c2.ingest_heartbeats([row], worker="w1", group="g") == (0, 1)  # checked against the table
        assert c2.query("Heartbeat | count").rows == [[1]]
        assert 'outpost_worker_up{group="g",worker="w1"} 1.0' in c2.metrics.render().decode()
    finally:
        c2.close()


def test_metrics_exposition(collector: Collector, url: str) -> None:
    with worker(url) as c:
        c.post(
            contract.AGENT_HEARTBEAT,
            json={
                "rows": [{"TimeGenerated": datetime.now(UTC).isoformat()}],
                "sent_at": (datetime.now(UTC) + timedelta(seconds=30)).isoformat(),
            },
        )
        r = c.post(
            contract.AGENT_DIAGNOSTICS,
            json={
                "time": datetime.now(UTC).isoformat(),
                "results": [
                    {
                        "id": "dns",
                        "group": "network",
                        "status": "pass",
                        "finding": "ok",
                        "remediation": "",
                        "duration_ms": 3,
                        "evidence": {"resolver": "127.0.0.53"},
                    },
                    {
                        "id": "tls",
                        "group": "network",
                        "status": "fail",
                        "finding": "expired",
                        "remediation": "renew",
                        "duration_ms": 9,
                        "evidence": {},
                    },
                ],
            },
        )
        assert r.json() == {"accepted": 2}
        bad = c.post(contract.AGENT_DIAGNOSTICS, json={"results": [{"id": "x", "status": "maybe"}]})
        assert bad.status_code == 400 and "status" in bad.json()["detail"]
    obs = collector.observer
    now = datetime.now(UTC)
    created, started = now - timedelta(seconds=40), now - timedelta(seconds=30)
    ev = dict(job_id="j1", runbook="Hello", group="linux", created_at=created)
    obs.on_job_status(JobEvent(**ev, worker=None, status="New", time=created))
    obs.on_job_status(JobEvent(**ev, worker="w1", status="Running", time=started, started_at=started))
    obs.on_job_status(JobEvent(**ev, worker="w1", status="Completed", time=now, started_at=started, ended_at=now))
    obs.on_poll(WorkerIdentity("id-w1", "w1", "linux"), True)
    obs.on_poll(WorkerIdentity("id-w1", "w1", "linux"), False)
    text = httpx.get(f"{url}/metrics").text
    for needle in [
        'outpost_worker_up{group="linux",worker="w1"} 1.0',
        'outpost_worker_up{group="linux",worker="w2"} 0.0',  # registered, never heartbeated
        'outpost_workers{group="linux",state="up"} 1.0',
        'outpost_workers{group="linux",state="down"} 1.0',
        'outpost_worker_last_heartbeat_timestamp_seconds{group="linux",worker="w1"}',
        'outpost_worker_clock_skew_seconds{group="linux",worker="w1"} 29.',
        'outpost_jobs_total{group="linux",runbook="Hello",status="Completed"} 1.0',
        'outpost_job_duration_seconds_bucket{group="linux",le="30.0",runbook="Hello"} 1.0',
        'outpost_job_queue_wait_seconds_bucket{group="linux",le="10.0",runbook="Hello"} 1.0',
        'outpost_queue_depth{group="linux"} 2.0',
        'outpost_queue_oldest_age_seconds{group="linux"} 42.5',
        'outpost_polls_total{group="linux",outcome="job"} 1.0',
        'outpost_polls_total{group="linux",outcome="empty"} 1.0',
        'outpost_dispatches_total{group="linux"} 1.0',
        'outpost_diagnose_check_failing{check="tls",group="linux",worker="w1"} 1.0',
        'outpost_diagnose_check_failing{check="dns",group="linux",worker="w1"} 0.0',
        "outpost_build_info{version=",
    ]:
        assert needle in text, needle
    assert "_created" not in text  # no creation-time series doubling every counter and histogram
    # Job logs landed as Azure Automation sends them.
    rows = q(
        url,
        "AzureDiagnostics | where Category == 'JobLogs' | project ResultType, RunbookName_s, RunOn_s,"
        " ResourceProvider | order by ResultType asc",
    )["rows"]
    assert rows == [
        ["Completed", "Hello", "linux", "MICROSOFT.AUTOMATION"],
        ["New", "Hello", "linux", "MICROSOFT.AUTOMATION"],
        ["Started", "Hello", "linux", "MICROSOFT.AUTOMATION"],
    ]
    diag = q(url, "DiagnosticResults | where Status == 'fail' | project Computer, CheckId, Remediation")["rows"]
    assert diag == [["w1", "tls", "renew"]]
    # Staleness: no heartbeat for longer than stale_after_s (2 s) turns the worker down.
    time.sleep(2.2)
    assert 'outpost_worker_up{group="linux",worker="w1"} 0.0' in httpx.get(f"{url}/metrics").text
    # A removed worker's series disappear (the control plane forgets it, then tells the observer).
    collector.metrics.snapshot = lambda: [GroupSnapshot("linux", 0, 0.0, {"w2": 1})]
    obs.on_worker_removed("w1", "linux")
    text = httpx.get(f"{url}/metrics").text
    assert 'worker="w1"' not in text


def test_outpost_query_cli(url: str) -> None:
    with worker(url) as c:
        c.post(
            contract.AGENT_HEARTBEAT,
            json={"rows": [{"TimeGenerated": datetime.now(UTC).isoformat(), "HeartbeatId": "cli-1"}]},
        )
    env = {"OUTPOST_URL": url, "OUTPOST_TOKEN": ADMIN_TOKEN, "PATH": "/usr/bin:/bin", "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "outpost.cli"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", "from outpost.cli import main; main()", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )

    del cmd
    table = run(
        "query", "Heartbeat | summarize arg_max(TimeGenerated, *) by Computer | project Computer, WorkerGroup_s"
    )
    assert table.returncode == 0, table.stderr
    assert "w1" in table.stdout and "linux" in table.stdout
    # The README's example at 80 columns: far too many columns for a table, so one block per row.
    env["COLUMNS"] = "80"
    wide = run("query", "Heartbeat | summarize arg_max(TimeGenerated, *) by Computer")
    env["COLUMNS"] = "200"
    assert wide.returncode == 0, wide.stderr
    lines = wide.stdout.splitlines()
    assert lines[0].startswith("── row 1 of 1"), wide.stdout
    assert any(line.split() == ["Computer", "w1"] for line in lines), wide.stdout
    assert any(line.split() == ["HeartbeatId", "cli-1"] for line in lines), wide.stdout
    stamp = next(line for line in lines if line.startswith("TimeGenerated")).split(None, 1)[1]
    assert len(stamp) == 19 and stamp[10] == " ", stamp  # to the second, for people
    assert "--json or --csv print every column" in wide.stderr
    as_json = run("query", "Heartbeat | project Computer", "--json")
    assert json.loads(as_json.stdout) == [{"Computer": "w1"}]
    as_csv = run("query", "Heartbeat | project Computer, WorkerGroup_s", "--csv")
    assert as_csv.stdout.splitlines() == ["Computer,WorkerGroup_s", "w1,linux"]
    bad = run("query", "Heartbeat | summarize count() by JobId_g.")
    assert bad.returncode == 1 and "syntax error at line 1" in bad.stderr and "Traceback" not in bad.stderr
