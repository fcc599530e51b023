"""Kill -9 one of three agents with 90 jobs in flight and retries on, restart it on the same
state dir: every job Completed, only the killed agent's jobs ran again, and no re-run
overlapped a still-running copy (a ledger records every execution while it runs)."""

from __future__ import annotations

import signal
import time
from collections import defaultdict
from pathlib import Path

import pytest

from tests.helpers.api import publish, start_job, wait_job
from tests.helpers.procs import wait_until

JOBS = 90  # 10 rounds of the 9 slots: the killed agent's restart still finds work queued
CONCURRENCY = 3

RUNBOOK = """L={ledger}
echo "start $1 $$ $(date +%s.%N)" >> "$L"
for k in 1 2 3 4 5 6 7 8; do sleep 0.1; echo "alive $1 $$ $(date +%s.%N)" >> "$L"; done
echo "n=$1"
"""


@pytest.mark.slow
def test_killed_agent_is_restarted_and_every_job_runs_exactly_once_more_at_most(server, make_agent, shared_dir: Path):
    ledger = shared_dir / "ledger"  # runbooks append to it as the runbook user
    ledger.touch()
    ledger.chmod(0o666)  # the umask would narrow touch(mode=...)
    agents = [make_agent(server, name=f"w{i}", run_args=["--concurrency", str(CONCURRENCY)]) for i in range(3)]
    with server.client() as c:
        publish(c, "work", RUNBOOK.format(ledger=ledger), retry_on_worker_loss=True)
        ids = [start_job(c, "work", params=[{"name": None, "value": str(i)}]) for i in range(JOBS)]
        victim = agents[0]
        wait_until(lambda: ledger.read_text().count("start") >= 20, 60, 0.1, "jobs to be running")
        assert victim.proc is not None
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(10)
        time.sleep(1)
        victim.start()  # same state dir: kills what its previous process left, then polls
        jobs = [wait_job(c, job_id, timeout=240) for job_id in ids]
    assert [j["status"] for j in jobs] == ["Completed"] * JOBS, [j for j in jobs if j["status"] != "Completed"]

    runs: dict[str, dict[str, list[float]]] = defaultdict(dict)  # job -> pid -> times
    for line in ledger.read_text().splitlines():
        kind, job, pid, at = line.split()
        runs[job].setdefault(pid, []).append(float(at))
    assert sorted(runs, key=int) == [str(i) for i in range(JOBS)]
    rerun = {job: pids for job, pids in runs.items() if len(pids) > 1}
    # Only what the killed agent was running can have run again: at most its slots.
    assert len(rerun) <= CONCURRENCY, rerun
    for job, pids in rerun.items():
        copies = sorted(pids.values(), key=min)
        for earlier, later in zip(copies, copies[1:], strict=False):
            assert max(earlier) < min(later), f"job {job}: a re-run started while an earlier copy still ran"
    assert all(j["activations"] <= 2 for j in jobs)
