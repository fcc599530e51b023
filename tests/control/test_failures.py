"""Dispatch under trouble: lost workers, server restarts, stops, timeouts, floods of output."""

from __future__ import annotations

import signal
import time
import uuid

import pytest

from tests.helpers.api import outputs, publish, start_job, wait_job
from tests.helpers.procs import wait_until

SLOW = "echo started\nsleep 30\necho never\n"


def _running(c, job_id):
    return wait_job(c, job_id, ("Running",), timeout=30)


def test_killed_agent_fails_its_job_naming_the_worker(make_server, make_agent):
    server = make_server(extra=["--lease-seconds", "3"])
    agent = make_agent(server, name="doomed")
    with server.client() as c:
        publish(c, "slow", SLOW)
        job_id = start_job(c, "slow")
        _running(c, job_id)
        agent.stop(signal.SIGKILL)
        job = wait_job(c, job_id, timeout=30)
    assert job["status"] == "Failed"
    assert "worker doomed lost" in job["status_reason"]


def test_retrying_runbook_is_requeued_then_suspended_after_three_activations(make_server, make_agent):
    server = make_server(extra=["--lease-seconds", "3"])
    agent = make_agent(server, name="victim1")
    with server.client() as c:
        publish(c, "slow", SLOW, retry_on_worker_loss=True)
        job_id = start_job(c, "slow")
        for attempt in range(1, 4):
            if attempt > 1:
                agent = make_agent(server, name=f"victim{attempt}")
            job = _running(c, job_id)
            assert job["activations"] == attempt
            agent.stop(signal.SIGKILL)
            if attempt < 3:
                job = wait_job(c, job_id, ("New",), timeout=30)
                assert "re-queued" in job["status_reason"]
        job = wait_job(c, job_id, timeout=30)
    assert job["status"] == "Suspended"
    assert "3 failed activations" in job["status_reason"]


def test_retrying_runbook_completes_on_another_worker(make_server, make_agent):
    server = make_server(extra=["--lease-seconds", "3"])
    first = make_agent(server, name="first")
    with server.client() as c:
        publish(c, "flaky", 'echo "attempt on $(basename $PWD)"\nsleep 2\necho finished\n', retry_on_worker_loss=True)
        job_id = start_job(c, "flaky")
        _running(c, job_id)
        first.stop(signal.SIGKILL)
        make_agent(server, name="second")
        job = wait_job(c, job_id, timeout=60)
        assert job["status"] == "Completed"
        assert job["worker"] == "second" and job["activations"] == 2
        assert outputs(c, job_id)[-1] == "finished"


def test_server_restart_mid_run_loses_no_job(make_server, make_agent):
    server = make_server()
    make_agent(server, run_args=["--concurrency", "2"])
    with server.client() as c:
        publish(c, "nap", 'sleep 1\necho "done $1"\n')
        ids = [start_job(c, "nap", params=[{"name": None, "value": str(i)}]) for i in range(10)]
    _ = wait_until(lambda: server.client().get(f"/api/v1/jobs/{ids[0]}").json()["status"] != "New", 30)
    server.stop()
    time.sleep(2)  # the agent's polls and events fail meanwhile; it must keep going
    server.start()
    with server.client() as c:
        for i, job_id in enumerate(ids):
            job = wait_job(c, job_id, timeout=90)
            assert job["status"] == "Completed", job
            assert outputs(c, job_id) == [f"done {i}"]


def test_stop_terminates_the_whole_process_group(server, make_agent, shared_dir):
    make_agent(server)
    marker = shared_dir / "child-alive"
    script = f"""
trap 'echo "got TERM"; exit 143' TERM
( sleep 60; touch {marker} ) &
echo started
while true; do sleep 0.1; done
"""
    with server.client() as c:
        publish(c, "stoppable", script)
        job_id = start_job(c, "stoppable")
        wait_until(lambda: "started" in outputs(c, job_id), 30, what="the runbook to start")
        r = c.post(f"/api/v1/jobs/{job_id}/stop")
        assert r.status_code == 200 and r.json()["status"] == "Stopping"
        job = wait_job(c, job_id, timeout=30)
        assert job["status"] == "Stopped"
        assert "got TERM" in outputs(c, job_id)
    # The background child was in the group too: it never gets to touch the marker.
    assert not marker.exists()


def test_stop_escalates_to_sigkill_after_grace(server, make_agent):
    make_agent(server)  # --stop-grace 2
    with server.client() as c:
        publish(c, "stubborn", "trap '' TERM\necho started\nwhile true; do sleep 0.1; done\n")
        job_id = start_job(c, "stubborn")
        wait_until(lambda: "started" in outputs(c, job_id), 30)
        c.post(f"/api/v1/jobs/{job_id}/stop")
        job = wait_job(c, job_id, timeout=30)
    assert job["status"] == "Stopped"
    assert job["exit_code"] == -9


def test_stop_a_queued_job(server):
    with server.client() as c:
        # A group with no live worker: register one through the API, then never run it.
        key = server.registration_key
        r = c.post("/api/v1/agent/register", json={"key": key, "group": "idle", "name": "sleeper"})
        assert r.status_code == 201
        publish(c, "never", "echo hi\n")
        job_id = start_job(c, "never", group="idle")
        job = c.post(f"/api/v1/jobs/{job_id}/stop").json()
    assert job["status"] == "Stopped"


def test_timeout_fails_the_job(server, make_agent):
    make_agent(server)
    with server.client() as c:
        publish(c, "forever", "echo started\nsleep 60\n")
        job = wait_job(c, start_job(c, "forever", timeout_s=1.5), timeout=30)
    assert job["status"] == "Failed"
    assert job["status_reason"] == "timed out after 1.5 s"


@pytest.mark.slow  # > 20 s: end to end with real processes
def test_hundred_thousand_lines_arrive_in_order(server, make_agent):
    make_agent(server)
    with server.client() as c:
        publish(c, "flood", "import sys\nfor i in range(100000):\n    print(i)\n", "python3")
        job = wait_job(c, start_job(c, "flood"), timeout=240)
        assert job["status"] == "Completed"
        lines = outputs(c, job["id"])
    assert lines == [str(i) for i in range(100000)]


def test_retried_event_batch_never_duplicates(server):
    with server.client() as c:
        reg = c.post(
            "/api/v1/agent/register", json={"key": server.registration_key, "group": "manual", "name": "m1"}
        ).json()
        publish(c, "manual", "echo x\n")
        job_id = start_job(c, "manual", group="manual")
    import httpx

    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {reg['credential']}"}) as w:
        (job,) = w.post("/api/v1/agent/poll", params={"wait": 5}).json()["jobs"]
        assert job["job_id"] == job_id
        batch = {
            "records": [
                {"seq": i, "stream": "Output", "time": "2026-01-01T00:00:00+00:00", "text": f"l{i}"} for i in range(5)
            ],
            "status": {"status": "Running"},
        }

        def post(*batches: dict) -> list[dict]:
            r = w.post("/api/v1/agent/events", json={"batches": list(batches)})
            assert r.status_code == 200, r.text
            return r.json()["results"]

        (first,) = post({"job_id": job_id, **batch})
        # A retried batch travelling with another job's (not ours): ours is acked as duplicates, the other refused.
        again, stranger = post({"job_id": job_id, **batch}, {"job_id": str(uuid.uuid4()), **batch})
        assert (first["ack"]["accepted"], first["ack"]["duplicates"]) == (5, 0)
        assert (again["ack"]["accepted"], again["ack"]["duplicates"]) == (0, 5)
        assert stranger["ack"] is None and stranger["error_status"] == 409
        final = {"job_id": job_id, "records": [], "status": {"status": "Completed", "exit_code": 0}}
        assert post(final)[0]["ack"]["status"] == "Completed"
    with server.client() as c:
        assert outputs(c, job_id) == [f"l{i}" for i in range(5)]
