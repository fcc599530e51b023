"""Kill -9 one of two replicas mid-load: every job ends Completed exactly once, and the
agents carry on through the other replica. (Also the suite's test that jobs spread over two
replicas on one PostgreSQL, with agents on both, each run exactly once.)"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.helpers.api import outputs, publish, start_job, wait_job
from tests.helpers.procs import Agent

JOBS = 100
KILL_AFTER = 40


@pytest.mark.slow
@pytest.mark.postgres
def test_killing_a_replica_mid_load_loses_and_duplicates_nothing(
    make_server, pg_url, tmp_path: Path, shared_dir: Path, request
):
    a = make_server("a", database_url=pg_url)
    b = make_server("b", database_url=pg_url)
    b.token, b.registration_key = a.token, a.registration_key  # b joined a's database: same account
    ledger = shared_dir / "ledger"  # runbooks append to it as the runbook user
    ledger.touch()
    ledger.chmod(0o666)  # the umask would narrow touch(mode=...)
    agents = []
    for i in range(3):
        first, second = (a, b) if i % 2 == 0 else (b, a)  # agents start on both replicas
        agent = Agent(first, tmp_path / f"state-w{i}", "g1", f"w{i}", ["--concurrency", "3"])
        agent.register(extra=["--url", second.url])  # one registration naming both replicas
        request.addfinalizer(agent.stop)
        agents.append(agent.start())
    ids: dict[str, int] = {}
    with a.client() as ca, b.client() as cb:
        # Each execution appends one line to the ledger: a job run twice shows up twice.
        publish(cb, "count", f'echo "$1" >> {ledger}\nsleep 0.3\necho "n=$1"\n')
        for i in range(JOBS):
            if i == KILL_AFTER:
                a.stop(signal.SIGKILL)
            client = ca if i % 2 and i < KILL_AFTER else cb
            ids[start_job(client, "count", params=[{"name": None, "value": str(i)}])] = i
        for job_id, i in ids.items():
            job = wait_job(cb, job_id, timeout=180)
            assert job["status"] == "Completed" and job["activations"] == 1, job
            assert outputs(cb, job_id) == [f"n={i}"]
        served = {cb.get(f"/api/v1/jobs/{j}").json()["worker"] for j in list(ids)[KILL_AFTER:]}
    runs = ledger.read_text().split()
    assert sorted(runs, key=int) == [str(i) for i in range(JOBS)]  # each job ran exactly once
    assert served == {"w0", "w1", "w2"}  # every agent carried on through the surviving replica
    for agent in agents:
        assert "Traceback" not in agent.log()
