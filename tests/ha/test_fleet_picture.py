"""One picture of the fleet across replicas: a collector, two replicas on one PostgreSQL, real agents.

- `Heartbeat | summarize max(TimeGenerated) by Computer` through either replica lists every worker;
- every replica's /metrics says every live worker is up (liveness from the shared store);
- a stopped worker fires exactly one stale alert, evaluated by the collector;
- killing the collector for 10 s loses no heartbeat or job log row, and duplicates none.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.alerts.realtools import WebhookReceiver
from tests.ha.fleet import CollectorProc, metric, query, replica_args, wait_drained
from tests.helpers.api import outputs, publish, start_job, wait_job
from tests.helpers.procs import cli, wait_until

STALE_RULE = """\
name: TestWorkerStale
severity: critical
frequency: 1s
query: |
  Heartbeat
  | where TimeGenerated > ago(1h)
  | summarize LastHeartbeat = max(TimeGenerated) by Computer, WorkerGroup_s
  | extend AgeSeconds = datetime_diff('second', now(), LastHeartbeat)
metric_column: AgeSeconds
operator: GreaterThan
threshold: 6
dimensions:
  worker: Computer
  group: WorkerGroup_s
summary: "Worker {worker} is stale"
"""


def _fleet(tmp_path: Path, make_server, pg_url: str, collector: CollectorProc, *more: str):
    a = make_server("a", database_url=pg_url, extra=replica_args(collector, *more))
    b = make_server("b", database_url=pg_url, extra=replica_args(collector, *more))
    b.token, b.registration_key = a.token, a.registration_key  # b joined a's database: same account
    return a, b


@pytest.mark.slow
def test_every_replica_sees_the_whole_fleet_and_one_stale_alert_fires(tmp_path, make_server, make_agent, pg_url):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "stale.yaml").write_text(STALE_RULE)
    with WebhookReceiver() as hook:
        collector = CollectorProc(
            tmp_path / "collector", ["--alert-rules", str(rules), "--alert-webhook-url", hook.url]
        ).start()
        try:
            # Replicas given the same webhook say they ignore it: only the collector evaluates.
            ignored = ("--alert-webhook-url", hook.url)
            a, b = _fleet(tmp_path, make_server, pg_url, collector, "--stale-after", "5", *ignored)
            assert "--alert-webhook-url ignored" in a.log_path.read_text()
            agents = [make_agent(a if i % 2 else b, name=f"w{i}") for i in range(4)]
            names = {x.name for x in agents}

            # Either replica answers over the whole fleet (each agent talks to one replica only).
            for replica in (a, b):
                seen = wait_until(
                    lambda r=replica: (
                        {row[0] for row in query(r, "Heartbeat | summarize max(TimeGenerated) by Computer")} >= names
                        and query(r, "Heartbeat | summarize max(TimeGenerated) by Computer")
                    ),
                    40,
                    0.5,
                    f"every worker's heartbeat through {replica.url}",
                )
                assert {row[0] for row in seen} == names
            # The CLI and the Kusto REST endpoint through a replica say the same.
            listed = cli("query", "Heartbeat | summarize max(TimeGenerated) by Computer", "--json", env=b.env())
            assert listed.returncode == 0, listed.stderr
            assert names <= {row["Computer"] for row in json.loads(listed.stdout)}
            with a.client() as c:
                kusto = c.post("/v1/rest/query", json={"db": "Outpost", "csl": "Heartbeat | distinct Computer"})
                assert kusto.status_code == 200, kusto.text
                assert {r[0] for r in kusto.json()["Tables"][0]["Rows"]} == names
                bad = c.post("/v2/rest/query", json={"db": "Outpost", "csl": "Heartbeat | where"})
                assert bad.status_code == 400 and "error" in bad.json()  # the collector's own Kusto error
                assert c.post("/api/v1/query", json={"query": "NoSuchTable"}).status_code == 400

            # Every replica reports every live worker up: liveness comes from the shared store.
            for replica in (a, b):
                for name in names:
                    wait_until(
                        lambda r=replica, n=name: metric(r, "outpost_worker_up", group="g1", worker=n) == 1.0,
                        20,
                        0.2,
                        f"{name} up on {replica.url}",
                    )
                assert metric(replica, "outpost_workers", group="g1", state="up") == 4.0

            # Stop one worker: the collector (and only it) fires one stale alert for it.
            stopped = agents[0]
            stopped.stop()
            fired = wait_until(
                lambda: [
                    x
                    for body in hook.bodies
                    if body["status"] == "firing"
                    for x in body["alerts"]
                    if x["labels"].get("worker") == stopped.name
                ],
                60,
                0.5,
                "the stale alert for the stopped worker",
            )
            # Several more evaluations (the rule runs every second): still one notification.
            evaluations: set[str] = set()

            def evaluated_four_more_times() -> bool:
                with b.client() as c:
                    evaluations.add(c.get("/api/v1/alerts/rules").json()[0]["last_evaluated"])
                return len(evaluations) > 4

            wait_until(evaluated_four_more_times, 30, 0.3, "four more evaluations of the stale rule")
            fired = [
                x
                for body in hook.bodies
                if body["status"] == "firing"
                for x in body["alerts"]
                if x["labels"]["alertname"] == "TestWorkerStale"
            ]
            assert [x["labels"]["worker"] for x in fired] == [stopped.name], hook.bodies
            # Both replicas agree it is down and the others are up.
            for replica in (a, b):
                wait_until(
                    lambda r=replica: metric(r, "outpost_worker_up", group="g1", worker=stopped.name) == 0.0,
                    20,
                    0.2,
                    f"{stopped.name} down on {replica.url}",
                )
                for other in names - {stopped.name}:
                    assert metric(replica, "outpost_worker_up", group="g1", worker=other) == 1.0
            # The alerting API of a replica is the collector's.
            with b.client() as c:
                alerts = c.get("/api/v1/alerts", params={"state": "firing"})
                assert alerts.status_code == 200, alerts.text
                assert [x["worker"] for x in alerts.json()["alerts"]] == [stopped.name]
                assert [r["name"] for r in c.get("/api/v1/alerts/rules").json()] == ["TestWorkerStale"]
            # Removing the worker removes its series from every replica.
            with a.client() as c:
                assert c.delete(f"/api/v1/workers/{stopped.name}").status_code in (200, 204)
            for replica in (a, b):
                assert f'worker="{stopped.name}"' not in httpx.get(f"{replica.url}/metrics").text
        finally:
            collector.stop()


@pytest.mark.slow
def test_killing_the_collector_for_10_s_loses_and_duplicates_nothing(tmp_path, make_server, make_agent, pg_url):
    collector = CollectorProc(tmp_path / "collector").start()
    try:
        a, b = _fleet(tmp_path, make_server, pg_url, collector)
        agents = [make_agent(a, name="w1"), make_agent(b, name="w2")]
        with a.client() as ca, b.client() as cb:
            publish(ca, "lines", 'echo "one $1"\necho "two $1"\n')
            before = [start_job(c, "lines", params=[{"name": None, "value": str(i)}]) for i, c in enumerate((ca, cb))]
            for job_id in before:
                assert wait_job(ca, job_id)["status"] == "Completed"

            collector.stop(signal.SIGKILL)
            outage_started = time.monotonic()
            during = [
                start_job(c, "lines", params=[{"name": None, "value": str(10 + i)}])
                for i, c in enumerate((ca, cb, ca, cb))
            ]
            for job_id in during:
                assert wait_job(cb, job_id)["status"] == "Completed"
            # Both replicas buffer while the collector is gone (and the agents notice nothing).
            wait_until(
                lambda: all((metric(r, "outpost_telemetry_forward_buffered_records") or 0) > 0 for r in (a, b)),
                20,
                0.2,
                "both replicas to buffer",
            )
            time.sleep(max(0.0, 10 - (time.monotonic() - outage_started)))
            down = query_fails(a)
            assert down.status_code == 503 and collector.url in down.json()["detail"]
            collector.start()

            for agent in agents:  # freeze the heartbeat count, then compare it exactly
                agent.stop()
            wait_drained(a, b)
            jobs = before + during
            taken = {
                t: sum(metric(r, "outpost_telemetry_forwarded_rows_total", table=t) or 0 for r in (a, b))
                for t in ("Heartbeat", "AzureDiagnostics")
            }
            assert taken["Heartbeat"] > 10
            # Every heartbeat either replica took is stored once, none twice.
            ((count, distinct),) = query(a, "Heartbeat | summarize count(), dcount(HeartbeatId)")
            assert count == distinct == taken["Heartbeat"]
            # Every job log and stream row is there once.
            ((rows,),) = query(b, "AzureDiagnostics | count")
            assert rows == taken["AzureDiagnostics"]
            logs = query(
                a,
                "AzureDiagnostics | where Category == 'JobLogs' | summarize n = count() by JobId_g, ResultType",
            )
            assert all(n == 1 for _, _, n in logs), logs
            assert {(j, "Completed") for j in jobs} <= {(j, rt) for j, rt, _ in logs}
            for i, job_id in enumerate(jobs):
                streamed = query(
                    b,
                    f"AzureDiagnostics | where Category == 'JobStreams' and JobId_g == '{job_id}'"
                    " | order by StreamSequence_d asc | project ResultDescription",
                )
                assert [r[0] for r in streamed] == outputs(ca, job_id)
                assert len(streamed) == 2, i
    finally:
        collector.stop()
    assert "unreachable" in a.log_path.read_text() and "reachable again" in a.log_path.read_text()


def query_fails(server) -> httpx.Response:
    with server.client() as c:
        return c.post("/api/v1/query", json={"query": "Heartbeat | count"})


def test_a_bad_collector_url_is_a_usage_error(tmp_path):
    r = cli("server", "--data-dir", str(tmp_path / "d"), "--port", "1", "--collector-url", "ftp://x", timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "http(s)://" in r.stderr + r.stdout and "Traceback" not in r.stderr


@pytest.mark.slow
def test_plain_replicas_agree_on_liveness_and_queues(make_server, make_agent, pg_url):
    """Without a collector too, liveness and queue gauges come from the shared store."""
    a = make_server("a", database_url=pg_url)
    b = make_server("b", database_url=pg_url)
    b.token, b.registration_key = a.token, a.registration_key
    names = {make_agent(a, name="w1").name, make_agent(b, name="w2").name}
    make_agent(b, group="g2", name="idle", start=False)  # registered, never runs: g2's jobs stay queued
    with a.client() as c:
        publish(c, "waits", "echo never\n")
        for _ in range(3):
            start_job(c, "waits", group="g2")
    for replica in (a, b):
        for name in names:
            wait_until(
                lambda r=replica, n=name: metric(r, "outpost_worker_up", group="g1", worker=n) == 1.0,
                30,
                0.2,
                f"{name} up on {replica.url}",
            )
    for replica in (a, b):
        assert metric(replica, "outpost_queue_depth", group="g2") == 3.0
        assert metric(replica, "outpost_worker_up", group="g2", worker="idle") == 0.0
        assert metric(replica, "outpost_workers", group="g1", state="up") == 2.0
