"""Schedules fire on time, once, without bursts after downtime; webhooks start runbooks with WebhookData."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from automation.models import Schedule
from automation.schedules import next_after
from tests.helpers.api import outputs, publish, start_job, wait_job
from tests.helpers.procs import cli, wait_until

ARGS_PY = "import sys\nprint('|'.join(sys.argv[1:]))\n"


def _jobs(c, runbook):
    return c.get("/api/v1/jobs", params={"runbook": runbook, "limit": 1000}).json()


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_schedule_fires_on_time_in_its_time_zone(server, make_agent):
    make_agent(server)
    env = server.env()
    with server.client() as c:
        c.put("/api/v1/runbooks/tick/draft", json={"type": "python3", "content": ARGS_PY})
        refused = cli("schedule", "create", "early", "--runbook", "tick", "--run-on", "g1", "--every", "1m", env=env)
        assert refused.returncode == 1
        assert "runbook tick has no published version; publish it first" in refused.stderr
        publish(c, "tick", ARGS_PY, "python3")

        tz = ZoneInfo("America/New_York")
        start_local = (datetime.now(tz) + timedelta(seconds=4)).replace(microsecond=0, tzinfo=None)
        created = cli(
            "schedule",
            "create",
            "every-minute",
            "--runbook",
            "tick",
            "--run-on",
            "g1",
            "--every",
            "1m",
            "--start",
            start_local.isoformat(),
            "--time-zone",
            "America/New_York",
            "--param",
            "scheduled",
            "--param",
            "n=1",
            "--json",
            env=env,
        )
        assert created.returncode == 0, created.stderr
        view = json.loads(created.stdout)
        start_utc = start_local.replace(tzinfo=tz).astimezone(UTC)
        assert _ts(view["next_run_at"]) == start_utc and view["frequency"] == "Minute"

        once_at = datetime.now(UTC) + timedelta(seconds=3)
        assert (
            cli(
                "schedule",
                "create",
                "once",
                "--runbook",
                "tick",
                "--run-on",
                "g1",
                "--start",
                once_at.isoformat(),
                "--param",
                "one-time",
                env=env,
            ).returncode
            == 0
        )

        jobs = wait_until(
            lambda: [j for j in _jobs(c, "tick") if j["params"][0]["value"] == "scheduled"],
            20,
            0.2,
            "the recurring schedule's first job",
        )
        job = wait_job(c, jobs[0]["id"])
        assert job["status"] == "Completed", (job, outputs(c, job["id"], "Error"))
        created_at = _ts(job["created_at"])
        assert start_utc <= created_at < start_utc + timedelta(seconds=3)  # on time
        assert outputs(c, job["id"]) == ["scheduled|--n|1"]
        shown = json.loads(cli("schedule", "show", "every-minute", "--json", env=env).stdout)
        assert _ts(shown["next_run_at"]) == start_utc + timedelta(minutes=1)
        assert shown["last_job_id"] == job["id"]

        once = wait_until(
            lambda: [j for j in _jobs(c, "tick") if j["params"][0]["value"] == "one-time"],
            20,
            0.2,
            "the one-time schedule's job",
        )
        assert once_at <= _ts(once[0]["created_at"]) < once_at + timedelta(seconds=3)
        listed = {s["name"]: s for s in json.loads(cli("schedule", "list", "--json", env=env).stdout)}
        assert listed["once"]["next_run_at"] is None
        time.sleep(2)
        assert len(_jobs(c, "tick")) == 2  # each fired exactly once so far
        assert cli("schedule", "delete", "every-minute", env=env).returncode == 0
        assert cli("schedule", "show", "every-minute", env=env).returncode == 1


@pytest.mark.slow  # > 20 s: end to end with real processes
def test_missed_runs_are_not_replayed_in_a_burst(make_server, make_agent):
    server = make_server()
    make_agent(server)
    with server.client() as c:
        publish(c, "tick", ARGS_PY, "python3")
        start = datetime.now(UTC) + timedelta(hours=1)
        r = c.post(
            "/api/v1/schedules/hourly",
            json={
                "runbook": "tick",
                "run_on": "g1",
                "frequency": "Minute",
                "interval": 1,
                "start_time": start.isoformat(),
            },
        )
        assert r.status_code == 201, r.text
    server.stop()
    # Simulate a long outage: the schedule's next run was due 10 minutes ago (10 occurrences missed).
    missed = datetime.now(UTC) - timedelta(minutes=10)
    with sqlite3.connect(server.data_dir / "control-plane.db") as db:
        db.execute(
            "UPDATE schedule SET start_time = ?, next_run_at = ?",
            (missed.replace(tzinfo=None).isoformat(sep=" "), missed.replace(tzinfo=None).isoformat(sep=" ")),
        )
    server.start()
    with server.client() as c:
        wait_until(lambda: _jobs(c, "tick"), 15, 0.2, "the catch-up run")
        time.sleep(3)
        assert len(_jobs(c, "tick")) == 1  # one catch-up run, not ten
        view = c.get("/api/v1/schedules/hourly").json()
        assert _ts(view["next_run_at"]) > datetime.now(UTC)
        assert _ts(view["next_run_at"]) - datetime.now(UTC) <= timedelta(minutes=1)


@pytest.mark.slow  # > 20 s: end to end with real processes
@pytest.mark.postgres
def test_a_due_schedule_fires_once_across_replicas(make_server, make_agent, pg_url):
    servers = [make_server(f"replica{i}", database_url=pg_url) for i in range(3)]
    make_agent(servers[0])
    with servers[0].client() as c:
        publish(c, "tick", ARGS_PY, "python3")
        at = datetime.now(UTC) + timedelta(seconds=3)
        for i in range(5):
            r = c.post(
                f"/api/v1/schedules/s{i}",
                json={
                    "runbook": "tick",
                    "run_on": "g1",
                    "frequency": "OneTime",
                    "start_time": at.isoformat(),
                    "params": [{"value": str(i)}],
                },
            )
            assert r.status_code == 201, r.text
        wait_until(lambda: len(_jobs(c, "tick")) >= 5, 20, 0.2, "five scheduled jobs")
        time.sleep(3)
        fired = sorted(j["params"][0]["value"] for j in _jobs(c, "tick"))
    assert fired == ["0", "1", "2", "3", "4"]


def test_schedule_bad_input(server, make_agent):
    make_agent(server)
    env = server.env()
    with server.client() as c:
        publish(c, "tick", ARGS_PY, "python3")
        cases = [
            ({"frequency": "Fortnight"}, "frequency: Input should be 'OneTime', 'Minute', 'Hour', 'Day' or 'Week'"),
            ({"frequency": "Day", "time_zone": "Mars/Olympus"}, "unknown time zone"),
            ({"frequency": "Hour", "interval": 0}, "interval: Input should be greater than or equal to 1"),
            ({"frequency": "OneTime", "start_time": "2001-01-01T00:00"}, "in the past"),
            ({"frequency": "Day", "start_time": "tomorrow"}, "not ISO 8601"),
            ({"frequency": "Day", "run_on": "nowhere"}, "worker group 'nowhere' does not exist"),
        ]
        for extra, message in cases:
            body = {"runbook": "tick", "run_on": "g1", **extra}
            r = c.post("/api/v1/schedules/bad", json=body)
            assert 400 <= r.status_code < 500 and message in r.json()["detail"], (extra, r.text)
    usage = cli("schedule", "create", "x", "--runbook", "tick", "--run-on", "g1", "--every", "3 fortnights", env=env)
    assert usage.returncode == 2 and "--every" in usage.stderr


def test_day_and_week_schedules_keep_wall_clock_time_across_dst():
    # 08:00 in Berlin every day, starting before the spring-forward night of 2030-03-31.
    sch = Schedule(
        name="x",
        runbook_name="r",
        run_on="g",
        frequency="Day",
        interval=1,
        start_time=datetime(2030, 3, 29, 8, 0, tzinfo=ZoneInfo("Europe/Berlin")).astimezone(UTC),
        time_zone="Europe/Berlin",
    )
    runs, t = [], datetime(2030, 3, 28, tzinfo=UTC)
    for _ in range(4):
        t = next_after(sch, t)
        runs.append(t.astimezone(ZoneInfo("Europe/Berlin")).strftime("%m-%d %H:%M %Z"))
    assert runs == ["03-29 08:00 CET", "03-30 08:00 CET", "03-31 08:00 CEST", "04-01 08:00 CEST"]
    weekly = Schedule(
        name="w",
        runbook_name="r",
        run_on="g",
        frequency="Week",
        interval=2,
        start_time=datetime(2030, 1, 7, 9, 30, tzinfo=UTC),
        time_zone="UTC",
        expiry_time=datetime(2030, 2, 10, tzinfo=UTC),
    )
    assert next_after(weekly, datetime(2030, 1, 8, tzinfo=UTC)) == datetime(2030, 1, 21, 9, 30, tzinfo=UTC)
    assert next_after(weekly, datetime(2030, 2, 5, tzinfo=UTC)) is None  # past the expiry
    hourly = Schedule(
        name="h",
        runbook_name="r",
        run_on="g",
        frequency="Hour",
        interval=6,
        start_time=datetime(2030, 1, 1, tzinfo=UTC),
        time_zone="UTC",
    )
    assert next_after(hourly, datetime(2031, 1, 1, 5, tzinfo=UTC)) == datetime(2031, 1, 1, 6, tzinfo=UTC)


# -- webhooks ---------------------------------------------------------------------------------

WEBHOOK_PY = """import json, sys
data = json.loads(sys.argv[1])
body = json.loads(data["RequestBody"])
print("name=" + data["WebhookName"])
print("body=" + json.dumps(body, sort_keys=True))
print("header=" + data["RequestHeader"].get("X-Ticket", ""))
print("auth-header-present=" + str("Authorization" in data["RequestHeader"]))
print("rest=" + "|".join(sys.argv[2:]))
"""


def test_webhook_starts_a_job_with_webhookdata(server, make_agent):
    make_agent(server)
    env = server.env()
    with server.client() as c:
        c.put("/api/v1/runbooks/hook/draft", json={"type": "python3", "content": WEBHOOK_PY})
        refused = cli("webhook", "create", "deploy", "--runbook", "hook", "--run-on", "g1", env=env)
        assert refused.returncode == 1 and "has no published version; publish it first" in refused.stderr
        publish(c, "hook", WEBHOOK_PY, "python3")
        created = cli(
            "webhook",
            "create",
            "deploy",
            "--runbook",
            "hook",
            "--run-on",
            "g1",
            "--param",
            "env=prod",
            "--expires-in",
            "30d",
            env=env,
        )
        assert created.returncode == 0, created.stderr
        url = created.stdout.strip()
        assert url.startswith(f"{server.url}/webhooks?token=")
        token = url.split("token=", 1)[1]

        body = {"release": "1.2.3", "services": ["api", "web"], "note": "żółw"}
        r = httpx.post(url, json=body, headers={"X-Ticket": "CHG-42", "Authorization": "Bearer caller-secret"})
        assert r.status_code == 202, r.text
        job_ids = r.json()["JobIds"]
        assert len(job_ids) == 1
        job = wait_job(c, job_ids[0])
        assert job["status"] == "Completed", outputs(c, job_ids[0], "Error")
        assert outputs(c, job_ids[0]) == [
            "name=deploy",
            "body=" + json.dumps(body, sort_keys=True),
            "header=CHG-42",
            "auth-header-present=False",
            "rest=--env|prod",
        ]
        # the path form works too
        r = httpx.post(f"{server.url}/webhooks/{token}", content=b'{"n": 1}')
        assert r.status_code == 202 and wait_job(c, r.json()["JobIds"][0])["status"] == "Completed"

        listed = cli("webhook", "list", "--json", env=env).stdout + c.get("/api/v1/webhooks/deploy").text
        assert token not in listed
        assert json.loads(cli("webhook", "list", "--json", env=env).stdout)[0]["name"] == "deploy"
        before = len(_jobs(c, "hook"))
        for wrong in (
            f"{server.url}/webhooks?token={token}x",
            f"{server.url}/webhooks?token=",
            f"{server.url}/webhooks",
            f"{server.url}/webhooks/opwh_nope",
        ):
            r = httpx.post(wrong, content=b"{}")
            assert r.status_code == 404, wrong
            assert r.json()["detail"] == "webhook not found (wrong token, expired or disabled)"
        big = httpx.post(url, content=b"x" * (70 * 1024))
        assert big.status_code == 413 and "too large" in big.json()["detail"]

        # expired: created with a 1 s lifetime
        r = c.post("/api/v1/webhooks/short", json={"runbook": "hook", "run_on": "g1", "expires_in_s": 1})
        assert r.status_code == 201
        short_url = r.json()["url"]
        time.sleep(1.5)
        r = httpx.post(short_url, content=b"{}")
        assert r.status_code == 404
        assert c.get("/api/v1/webhooks/short").json()["expired"] is True

        # deleted: its URL is dead at once
        assert cli("webhook", "delete", "deploy", env=env).returncode == 0
        assert httpx.post(url, content=b"{}").status_code == 404
        time.sleep(1)
        assert len(_jobs(c, "hook")) == before  # none of the refused calls started anything
    server.stop()
    assert token not in server.log_path.read_text()
    with sqlite3.connect(server.data_dir / "control-plane.db") as db:
        stored = db.execute("SELECT token_hash FROM webhook").fetchall()
    assert all(token not in row[0] for row in stored)


def test_webhook_job_is_a_normal_job(server, make_agent):
    """WebhookData is the first positional parameter for bash runbooks too ($1)."""
    make_agent(server)
    with server.client() as c:
        script = 'echo "$1" | python3 -c "import json,sys; print(json.load(sys.stdin)[\'RequestBody\'])"\n'
        publish(c, "bashhook", script)
        r = c.post("/api/v1/webhooks/b", json={"runbook": "bashhook", "run_on": "g1"})
        r = httpx.post(r.json()["url"], content=b"plain text body")
        job_id = r.json()["JobIds"][0]
        assert wait_job(c, job_id)["status"] == "Completed"
        assert outputs(c, job_id) == ["plain text body"]
        assert start_job(c, "bashhook", params=[{"value": '{"RequestBody": "manual"}'}])
