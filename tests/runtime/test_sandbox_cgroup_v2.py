"""Per-job cgroup v2: a job in its own child cgroup of a delegated v2 directory (--cgroup-root),
CPU accounting from its cpu.stat, cgroup.kill for the whole tree, and a limit the hierarchy's
controllers cannot enforce refused by name.

The test mounts a cgroup2 hierarchy in a directory of its own and gives the agent a fresh
subtree of it; both are removed afterwards. This machine's v2 hierarchy has no memory, cpu or
pids controller (they are bound to cgroup v1), which is what the refusal test relies on.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers.api import outputs, publish, start_job, wait_job
from tests.helpers.procs import cli, wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a cgroup2 hierarchy needs root")

BURN = 'python3 -c "sum(range(40_000_000))"'


def _rmtree_cgroups(path: Path) -> None:
    """Kill what is left in `path`'s cgroups and remove them, deepest first (bounded)."""
    for sub in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [path]:
        with contextlib.suppress(OSError):
            (sub / "cgroup.kill").write_text("1")
        for _ in range(100):
            try:
                sub.rmdir()
                break
            except OSError:
                time.sleep(0.02)


@pytest.fixture
def v2_root():
    mount = Path(tempfile.mkdtemp(prefix="outpost-cg2-"))
    made = subprocess.run(["mount", "-t", "cgroup2", "none", str(mount)], capture_output=True, text=True, timeout=30)
    if made.returncode != 0:
        mount.rmdir()
        pytest.skip(f"cannot mount cgroup2: {made.stderr.strip()}")
    root = mount / f"outpost-test-{uuid.uuid4().hex[:8]}"
    try:
        root.mkdir()
        yield root
    finally:
        _rmtree_cgroups(root)
        subprocess.run(["umount", str(mount)], capture_output=True, timeout=30)
        mount.rmdir()


def _agent(server, make_agent, root: Path, name: str):
    return make_agent(server, name=name, run_args=["--cgroup-root", str(root)])


def test_a_job_runs_in_its_own_v2_cgroup_and_cpu_comes_from_cpu_stat(server, make_agent, v2_root: Path):
    agent = _agent(server, make_agent, v2_root, "v2")
    # The burner is orphaned at once (its parent subshell exits): wait4 never sees its CPU, the cgroup does.
    script = f"cat /proc/self/cgroup\n( {BURN} & )\nwhile pgrep -f 'range.40_000_000' >/dev/null; do sleep 0.1; done\n"
    with server.client() as c:
        publish(c, "where", script)
        job_id = start_job(c, "where")
        job = wait_job(c, job_id, timeout=120)
        assert job["status"] == "Completed", (job, outputs(c, job_id, "Error"))
        lines = outputs(c, job_id, "Output")
    unified = [line for line in lines if line.startswith("0::")]
    assert unified == [f"0::/{v2_root.name}/outpost-jobs/{job_id}"], lines
    res = job["resources"]
    assert res["measured_by"] == "cgroup v2" and res["enforced_by"] is None
    assert res["cpu_user_s"] >= 0.2, res  # the orphan's CPU: only cpu.stat has it
    assert not (v2_root / "outpost-jobs" / job_id).exists()
    # diagnose, from the running agent's status.json, says how job limits are enforced
    diag = cli("diagnose", "--state-dir", str(agent.state_dir), "--check", "sandbox.cgroup", "--json")
    check = next(r for r in json.loads(diag.stdout)["results"] if r["id"] == "sandbox.cgroup")
    assert "job limits are enforced by cgroup v2" in check["finding"], check
    assert str(v2_root / "outpost-jobs") in check["evidence"]["job_limits_enforcement"]


def test_stop_kills_the_whole_tree_with_cgroup_kill(server, make_agent, v2_root: Path):
    _agent(server, make_agent, v2_root, "v2kill")
    script = 'setsid sleep 600 </dev/null >/dev/null 2>&1 &\necho "escaped=$!"\nsleep 600\n'
    with server.client() as c:
        publish(c, "escape", script)
        job_id = start_job(c, "escape")

        def escaped_pid() -> int | None:
            return next((int(x[8:]) for x in outputs(c, job_id, "Output") if x.startswith("escaped=")), None)

        escaped = wait_until(escaped_pid, 60, 0.1, "the escaped pid")
        assert (v2_root / "outpost-jobs" / job_id / "cgroup.procs").read_text().split().count(str(escaped)) == 1
        c.post(f"/api/v1/jobs/{job_id}/stop")
        job = wait_job(c, job_id, timeout=60)
    assert job["status"] == "Stopped", job
    try:
        gone = wait_until(lambda: not _alive(escaped) or None, 10, 0.05, "the escaped sleep to die")
        assert gone
    finally:
        with contextlib.suppress(ProcessLookupError):
            if _alive(escaped):
                os.kill(escaped, signal.SIGKILL)
    assert not (v2_root / "outpost-jobs" / job_id).exists()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_a_limit_the_v2_hierarchy_cannot_enforce_fails_naming_the_controller(server, make_agent, v2_root: Path):
    if "memory" in (v2_root / "cgroup.controllers").read_text().split():
        pytest.skip("this machine's cgroup v2 hierarchy has the memory controller")
    _agent(server, make_agent, v2_root, "v2mem")
    with server.client() as c:
        publish(c, "capped", "echo should-not-run\n")
        assert c.put("/api/v1/runbooks/capped/limits", json={"memory_mb": 64}).status_code == 200
        job_id = start_job(c, "capped")
        job = wait_job(c, job_id, timeout=60)
        assert "should-not-run" not in outputs(c, job_id, "Output")
    assert job["status"] == "Failed"
    reason = job["status_reason"] if "status_reason" in job else job.get("reason")
    assert "memory controller" in str(reason) and "cgroup v2" in str(reason), job
