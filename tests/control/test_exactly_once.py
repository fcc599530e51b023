"""Exactly once with real servers: lost answers, repeated requests, replicas racing, store outages, SIGTERM."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx
import psycopg
import pytest

from outpost.contract import AGENT_EVENTS, AGENT_POLL, AGENT_REGISTER, IDEMPOTENCY_HEADER
from tests.conftest import PG_ADMIN_DSN
from tests.helpers.api import publish, start_job
from tests.helpers.dropping_proxy import DroppingProxy
from tests.helpers.procs import Server, cli, wait_until


def register(server: Server, name: str, group: str = "g1") -> dict[str, str]:
    r = httpx.post(f"{server.url}{AGENT_REGISTER}", json={"key": server.registration_key, "group": group, "name": name})
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['credential']}"}


def record(seq: int) -> dict[str, object]:
    return {"seq": seq, "stream": "Output", "time": datetime.now(UTC).isoformat(), "text": f"line {seq}"}


def test_job_start_through_a_proxy_that_loses_the_first_answer_starts_one_job(server):
    register(server, "w1")
    with server.client() as c:
        publish(c, "once", "echo hi\n")
    with DroppingProxy(server.port) as proxy:
        done = cli(
            "job", "start", "once", "--run-on", "g1", env={"OUTPOST_URL": proxy.url, "OUTPOST_TOKEN": server.token}
        )
        assert proxy.dropped == 1  # the first attempt's answer was lost after the server created the job
    assert done.returncode == 0, done.stderr
    with server.client() as c:
        assert [j["id"] for j in c.get("/api/v1/jobs").json()] == [done.stdout.strip()]


def test_idempotency_key_returns_the_first_job_and_refuses_another_body(server):
    register(server, "w1")
    with server.client() as c:
        publish(c, "once", "echo hi\n")
        body = {"runbook": "once", "run_on": "g1", "params": [{"name": "n", "value": "1"}]}
        first = c.post("/api/v1/jobs", json=body, headers={IDEMPOTENCY_HEADER: "key-1"})
        again = c.post("/api/v1/jobs", json=body, headers={IDEMPOTENCY_HEADER: "key-1"})
        assert first.status_code == again.status_code == 201, again.text
        assert again.json()["id"] == first.json()["id"] and again.json().keys() == first.json().keys()
        assert again.headers.get("Idempotent-Replayed") == "true" and "Idempotent-Replayed" not in first.headers
        other = c.post("/api/v1/jobs", json={**body, "params": []}, headers={IDEMPOTENCY_HEADER: "key-1"})
        assert other.status_code == 409 and "already used for a different request" in other.json()["detail"]
        bad = c.post("/api/v1/jobs", json=body, headers={IDEMPOTENCY_HEADER: "has a space"})
        assert bad.status_code == 422 and f"{IDEMPOTENCY_HEADER}: 'has a space' is not valid" in bad.json()["detail"]
        # Without a key every request is a new job, as before.
        plain = {start_job(c, "once"), start_job(c, "once")}
        assert len(plain) == 2
        assert len(c.get("/api/v1/jobs").json()) == 3


def test_webhook_request_starts_one_job_and_a_keyed_retry_finds_it(server):
    register(server, "w1")
    with server.client() as c:
        publish(c, "hooked", 'echo "$1"\n')
        hook = c.post("/api/v1/webhooks/deploy", json={"runbook": "hooked", "run_on": "g1"}).json()
    url = hook["url"]
    first = httpx.post(url, content=b'{"v": 1}', headers={IDEMPOTENCY_HEADER: "delivery-7"})
    retry = httpx.post(url, content=b'{"v": 1}', headers={IDEMPOTENCY_HEADER: "delivery-7"})
    assert first.status_code == retry.status_code == 202
    assert first.json()["JobIds"] == retry.json()["JobIds"]
    changed = httpx.post(url, content=b'{"v": 2}', headers={IDEMPOTENCY_HEADER: "delivery-7"})
    assert changed.status_code == 409
    unkeyed = [httpx.post(url, content=b"{}").json()["JobIds"][0] for _ in range(2)]
    assert len(set(unkeyed)) == 2
    with server.client() as c:
        assert len(c.get("/api/v1/jobs").json()) == 3


def test_a_lost_poll_answer_is_offered_again_and_no_events_after_the_end(server):
    w1, w2 = register(server, "w1"), register(server, "w2")
    with server.client() as c:
        publish(c, "once", "echo hi\n")
        job_id = start_job(c, "once")
        with (
            DroppingProxy(server.port) as proxy,
            httpx.Client(base_url=proxy.url, headers=w1) as lossy,
            pytest.raises(httpx.TransportError),
        ):
            lossy.post(AGENT_POLL, params={"wait": 0}, json={"held": []})
        job = c.get(f"/api/v1/jobs/{job_id}").json()
        assert (job["status"], job["worker"], job["activations"]) == ("Activating", "w1", 1)
        with (
            httpx.Client(base_url=server.url, headers=w1) as agent,
            httpx.Client(base_url=server.url, headers=w2) as other,
        ):
            assert agent.post(AGENT_POLL, params={"wait": 0}).status_code == 204  # no body: as before, no re-offer
            assert other.post(AGENT_POLL, params={"wait": 0}, json={"held": []}).status_code == 204  # not w2's
            again = agent.post(AGENT_POLL, params={"wait": 0}, json={"held": []})
            assert again.status_code == 200, again.text
            assert [(j["job_id"], j["activation"]) for j in again.json()["jobs"]] == [(job_id, 1)]
            assert c.get(f"/api/v1/jobs/{job_id}").json()["activations"] == 1
            assert agent.post(AGENT_POLL, params={"wait": 0}, json={"held": [job_id]}).status_code == 204

            final = {
                "job_id": job_id,
                "records": [record(0), record(1)],
                "status": {"status": "Completed", "exit_code": 0, "started_at": datetime.now(UTC).isoformat()},
            }
            done = agent.post(AGENT_EVENTS, json={"batches": [final]}).json()["results"][0]
            assert done["ack"] == {"accepted": 2, "duplicates": 0, "status": "Completed"}
            # The answer to the final batch was lost, say: its retry is taken as duplicates.
            retried = agent.post(AGENT_EVENTS, json={"batches": [final]}).json()["results"][0]
            assert retried["ack"] == {"accepted": 0, "duplicates": 2, "status": "Completed"}
            late = agent.post(AGENT_EVENTS, json={"batches": [{"job_id": job_id, "records": [record(2)]}]})
            result = late.json()["results"][0]
            assert result["error_status"] == 409 and "has ended" in result["error"]
        assert len(c.get(f"/api/v1/jobs/{job_id}/streams").json()["records"]) == 2


def test_one_key_at_two_replicas_at_once_starts_one_job(make_server, pg_url):
    a = make_server("a", database_url=pg_url)
    b = make_server("b", database_url=pg_url)
    b.token, b.registration_key = a.token, a.registration_key
    register(a, "w1")
    with a.client() as c:
        publish(c, "once", "echo hi\n")
    body = {"runbook": "once", "run_on": "g1"}

    def start(server: Server) -> tuple[int, str]:
        with server.client() as c:
            r = c.post("/api/v1/jobs", json=body, headers={IDEMPOTENCY_HEADER: "shared-key"})
        return r.status_code, r.json().get("id", r.text)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(start, [a, b] * 4))
    assert {code for code, _ in answers} == {201}
    assert len({job_id for _, job_id in answers}) == 1
    with b.client() as c:
        assert len(c.get("/api/v1/jobs").json()) == 1


def test_store_outage_is_503_with_retry_after_logged_once_and_recovers(make_server, pg_url):
    server = make_server(database_url=pg_url)
    database = pg_url.rsplit("/", 1)[1]
    worker = register(server, "w1")
    with server.client() as c:
        publish(c, "once", "echo hi\n")
        start_job(c, "once")
    body = {"runbook": "once", "run_on": "g1"}
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        try:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (database,))
            answers = []
            with server.client() as c, httpx.Client(base_url=server.url, headers=worker, timeout=30) as agent:
                for _ in range(3):
                    answers += [
                        c.get("/api/v1/jobs"),
                        c.post("/api/v1/jobs", json=body),
                        c.get("/api/v1/runbooks"),
                        agent.post(AGENT_POLL, params={"wait": 0}, json={"held": []}),
                    ]
        finally:
            admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
    assert [r.status_code for r in answers] == [503] * len(answers), [r.text for r in answers]
    assert all(r.headers.get("Retry-After", "").isdigit() for r in answers)
    assert "store is unavailable" in answers[0].json()["detail"]
    with server.client() as c:  # back without a restart
        wait_until(lambda: c.get("/api/v1/jobs").status_code == 200, 30, 0.2, "the API to recover")
        assert c.post("/api/v1/jobs", json=body).status_code == 201
    wait_until(lambda: "store reachable again" in server.log_path.read_text(), 30, 0.2, "the recovery to be logged")
    log = server.log_path.read_text()
    assert log.count("control-plane store unreachable") == 1, log
    assert "Traceback" not in log and " 500 " not in log, log


def test_sigterm_with_parked_polls_logs_no_traceback(server):
    worker = register(server, "w1")
    answers: list[object] = []

    def park() -> None:
        try:
            r = httpx.post(
                f"{server.url}{AGENT_POLL}", params={"wait": 30}, json={"held": []}, headers=worker, timeout=40
            )
            answers.append(r.status_code)
        except httpx.TransportError as exc:
            answers.append(type(exc).__name__)

    threads = [threading.Thread(target=park) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(1.5)  # let the polls park in the server
    server.stop()
    for t in threads:
        t.join(45)
    assert server.proc is not None and server.proc.returncode in (0, -15)  # uvicorn re-raises the SIGTERM
    log = server.log_path.read_text()
    assert "CancelledError" not in log and "Traceback" not in log, log
    assert answers == [503] * 3, answers  # "shutting down; retry", not a reset or a 500
