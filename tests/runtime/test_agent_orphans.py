"""A runbook dies with its agent; a restarted agent cleans up what a crash left; one agent per state dir."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from tests.helpers.api import outputs, publish, start_job, wait_job
from tests.helpers.procs import OUTPOST, wait_until

# bash, a subshell child, and `sleep 300` as its grandchild: all in the runbook's process group.
FAMILY = 'echo "pgid=$$"\n( sleep 300; echo never ) &\nwait\n'


def _group_members(pgid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def _pids_with_env(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


def _pgid_of_job(c, job_id: str) -> int:
    line = wait_until(lambda: [x for x in outputs(c, job_id) if x.startswith("pgid=")], 30, 0.1, "the pgid line")[0]
    return int(line.split("=")[1])


def test_kill_9_of_the_agent_takes_the_whole_runbook_group_with_it(server, make_agent):
    agent = make_agent(server, name="doomed")
    with server.client() as c:
        publish(c, "family", FAMILY)
        job_id = start_job(c, "family")
        pgid = _pgid_of_job(c, job_id)
        wait_until(lambda: len(_group_members(pgid)) >= 3, 10, 0.1, "bash, its subshell and sleep")
        assert agent.proc is not None
        agent.proc.send_signal(signal.SIGKILL)
        agent.proc.wait(10)
        wait_until(lambda: not _group_members(pgid), 10, 0.1, "the runbook's process group to be gone")
        assert not _pids_with_env(f"AUTOMATION_JOB_ID={job_id}")


def test_restart_kills_survivors_reports_them_and_cleans_the_work_dir(make_server, make_agent):
    """The watchdog is killed together with the agent: the next agent start finds and ends the survivors."""
    server = make_server(extra=["--lease-seconds", "60"])
    agent = make_agent(server, name="phoenix")
    work = agent.state_dir / "work"
    with server.client() as c:
        publish(c, "family", FAMILY)
        job_id = start_job(c, "family")
        pgid = _pgid_of_job(c, job_id)
        wait_until(lambda: len(_group_members(pgid)) >= 3, 10, 0.1, "bash, its subshell and sleep")
        # the job's own work dir: <state-dir>/work/<job> as the agent's user, a private temp dir as another
        workdir = Path(json.loads((work / f"{job_id}.json").read_text())["workdir"])
        assert workdir.is_dir()
        assert agent.proc is not None
        watchdogs = [p for p in _children(agent.proc.pid) if b"watchdog" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(watchdogs) == 1
        os.kill(watchdogs[0], signal.SIGKILL)
        agent.proc.send_signal(signal.SIGKILL)
        agent.proc.wait(10)
        time.sleep(0.5)
        survivors = _group_members(pgid)  # bash had PDEATHSIG; its subshell and sleep did not
        assert survivors, "the scenario needs survivors"
        agent.start()
        wait_until(lambda: not _group_members(pgid), 15, 0.1, "the restarted agent to kill the survivors")
        wait_until(lambda: not workdir.exists(), 10, 0.1, "the stale work dir to go")
        assert not (work / f"{job_id}.json").exists()
        warnings = wait_until(lambda: outputs(c, job_id, "Warning"), 15, 0.2, "the restart notice")
    assert "agent on phoenix restarted while this job ran" in warnings[0]
    assert "were killed" in warnings[0]
    assert "killed" in agent.log() and "left by a previous agent" in agent.log()


def test_requeued_job_runs_again_on_the_restarted_worker(make_server, make_agent):
    """Issue 11 defect 1: the same worker, restarted, claims its re-queued job: it must run, not fail."""
    server = make_server(extra=["--lease-seconds", "3"])
    agent = make_agent(server, name="again")
    with server.client() as c:
        publish(c, "flaky", "echo start\nsleep 3\necho finished\n", retry_on_worker_loss=True)
        job_id = start_job(c, "flaky")
        wait_job(c, job_id, ("Running",), timeout=30)
        agent.stop(signal.SIGKILL)
        agent.start()
        job = wait_job(c, job_id, timeout=60)
        assert job["status"] == "Completed", job
        assert job["activations"] == 2
        assert outputs(c, job_id)[-1] == "finished"
    assert "File exists" not in agent.log()


def test_second_agent_on_the_same_state_dir_refuses_naming_the_first(server, make_agent):
    agent = make_agent(server, name="only")
    assert agent.proc is not None
    lock = agent.state_dir / "agent.lock"
    wait_until(lambda: lock.exists() and lock.read_text().strip() == str(agent.proc.pid), 15, 0.1, "the lock")
    second = subprocess.run(
        [*OUTPOST, "worker", "run", "--state-dir", str(agent.state_dir)], capture_output=True, text=True, timeout=30
    )
    assert second.returncode != 0
    assert f"another agent (PID {agent.proc.pid}) is already running" in second.stderr
    assert "Traceback" not in second.stderr
    assert agent.proc.poll() is None  # the first carries on
    with server.client() as c:
        publish(c, "hi", "echo hi\n")
        job = wait_job(c, start_job(c, "hi"), timeout=30)
    assert job["status"] == "Completed"
