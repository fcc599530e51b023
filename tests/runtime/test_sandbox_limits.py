"""Per-job resources and explicit limits, with real runbooks on a real agent.

As root on a machine with writable cgroup v1 hierarchies (this one, CI) the agent runs each
job in its own cgroup; the rlimit cases force `--limits rlimit`.
"""

from __future__ import annotations

import os

import pytest

from agent import limits as agent_limits
from tests.helpers.api import outputs, publish, start_job, wait_job
from tests.helpers.procs import cli, wait_until

MIB = 1024 * 1024

WORK = """\
import time
block = b"x" * (40 * 1024 * 1024)
end = time.process_time() + 0.3
while time.process_time() < end:
    pass
print(len(block))
"""
HOG = """\
chunks = []
for _ in range(40):
    chunks.append(b"x" * (10 * 1024 * 1024))
print("survived")
"""
SPIN = """\
import time
end = time.monotonic() + 2.0
while time.monotonic() < end:
    pass
"""
FORKS = """\
import os, time
for i in range(20):
    if os.fork() == 0:
        time.sleep(5)
        os._exit(0)
print("forked 20")
"""


def _set_limits(c, group: str, **limits: object) -> None:
    r = c.put(f"/api/v1/groups/{group}/limits", json=limits)
    assert r.status_code == 200, r.text


def _run(c, name: str, content: str, rb_type: str, group: str) -> dict:
    publish(c, name, content, rb_type)
    return wait_job(c, start_job(c, name, group=group), timeout=60)


@pytest.fixture
def cgroups() -> None:
    if agent_limits.detect().mechanism != "cgroup v1":
        if os.environ.get("CI"):
            pytest.fail("CI runs as root on cgroup v1: job cgroups must be available")
        pytest.skip("needs writable cgroup v1 hierarchies (root)")


def test_job_resources_are_measured_and_shown(server, make_agent):
    agent = make_agent(server, name="acct", run_args=["--metrics-interval", "1"])
    with server.client() as c:
        job = _run(c, "work", WORK, "python3", "g1")
        assert job["status"] == "Completed", job
        res = job["resources"]
        assert res["cpu_user_s"] + res["cpu_system_s"] >= 0.25
        assert res["peak_rss_bytes"] >= 40 * MIB
        assert res["wall_s"] >= 0.3 and res["exit_signal"] is None and res["limits"] is None
        killed = _run(c, "selfkill", "echo before\nkill -TERM $$\necho after\n", "bash", "g1")
        assert killed["status"] == "Failed"
        assert killed["resources"]["exit_signal"] == 15
        assert "killed by signal 15 (SIGTERM)" in killed["status_reason"]
    shown = cli("job", "show", job["id"], env=server.env())
    assert shown.returncode == 0, shown.stderr
    assert "peak_memory" in shown.stdout and "cpu_time" in shown.stdout and "MiB RSS" in shown.stdout
    assert agent.proc is not None and agent.proc.poll() is None
    query = (
        f"AzureDiagnostics | where Category == 'JobLogs' and JobId_g == '{job['id']}' and ResultType == 'Completed'"
        " | project PeakRssBytes_d, CpuUserSeconds_d, WallSeconds_d"
    )
    with server.client() as c:
        rows = wait_until(lambda: c.post("/api/v1/query", json={"query": query}).json()["rows"], 20, 0.2, "JobLogs")
        assert rows[0][0] == res["peak_rss_bytes"] and rows[0][1] == res["cpu_user_s"] and rows[0][2] == res["wall_s"]
        metrics = c.get("/metrics").text
    assert 'outpost_job_cpu_seconds_count{group="g1",runbook="work"} 1.0' in metrics
    assert 'outpost_job_peak_rss_bytes_bucket{group="g1",le="+Inf",runbook="work"} 1.0' in metrics
    otlp = "OTelMetrics | where Name in ('outpost.agent.job.cpu', 'outpost.agent.job.peak_rss') | distinct Name"
    with server.client() as c:
        names = wait_until(
            lambda: len(r := c.post("/api/v1/query", json={"query": otlp}).json()["rows"]) == 2 and r, 30, 0.5, "OTLP"
        )
    assert sorted(n for (n,) in names) == ["outpost.agent.job.cpu", "outpost.agent.job.peak_rss"]


def test_memory_cpu_and_process_limits_in_a_job_cgroup(server, make_agent, cgroups):
    make_agent(server, name="lim")
    with server.client() as c:
        _set_limits(c, "g1", memory_mb=64)
        hog = _run(c, "hog", HOG, "python3", "g1")
        assert hog["status"] == "Failed", hog
        assert "survived" not in outputs(c, hog["id"], "Output")
        reason = hog["status_reason"]
        assert reason.startswith("out of memory") and "64 MiB" in reason and "peak" in reason, reason
        res = hog["resources"]
        assert res["oom_killed"] is True and res["enforced_by"] == "cgroup v1"
        assert res["limits"]["memory_mb"] == 64 and res["memory_peak_bytes"] <= 64 * MIB

        _set_limits(c, "g1", cpu_percent=20)
        spin = _run(c, "spin", SPIN, "python3", "g1")
        assert spin["status"] == "Completed", spin
        res = spin["resources"]
        cpu = res["cpu_user_s"] + res["cpu_system_s"]
        # 20% of one CPU over ~2 s of wall time: about 0.4 s (unlimited, this loop would use ~2 s).
        assert 0 < cpu <= 0.2 * res["wall_s"] * 1.5 + 0.1, res
        assert res["cpu_throttled_s"] > 0.5, res

        _set_limits(c, "g1", max_processes=5)
        forks = _run(c, "forks", FORKS, "python3", "g1")
        assert forks["status"] == "Failed", forks
        assert "process limit of 5" in forks["status_reason"], forks["status_reason"]
        assert any("BlockingIOError" in line for line in outputs(c, forks["id"], "Error"))
    shown = cli("job", "show", hog["id"], env=server.env())
    assert "memory 64 MiB (cgroup v1)" in shown.stdout, shown.stdout


def test_rlimit_enforcement_limits_memory_and_refuses_a_cpu_quota(server, make_agent):
    make_agent(server, name="rl", run_args=["--limits", "rlimit"])
    with server.client() as c:
        _set_limits(c, "g1", memory_mb=128)
        hog = _run(c, "hog", HOG.replace("range(40)", "range(60)"), "python3", "g1")
        assert hog["status"] == "Failed", hog
        assert "limits in force (rlimit): memory 128 MiB" in hog["status_reason"], hog["status_reason"]
        assert any("MemoryError" in line for line in outputs(c, hog["id"], "Error"))
        assert hog["resources"]["enforced_by"] == "rlimit"

        _set_limits(c, "g1", cpu_percent=20)
        spin = _run(c, "spin", SPIN, "python3", "g1")
        assert spin["status"] == "Failed"
        assert "CPU quota of 20% cannot be enforced" in spin["status_reason"], spin["status_reason"]
        assert outputs(c, spin["id"]) == []  # never started


def test_group_limits_are_validated_and_listed(server, make_agent):
    make_agent(server, name="v", start=False)
    with server.client() as c:
        bad = c.put("/api/v1/groups/g1/limits", json={"memory_mb": 1})
        assert bad.status_code == 422 and "memory_mb" in bad.text
        assert c.put("/api/v1/groups/nope/limits", json={}).status_code == 404
    result = cli("group", "set-limits", "g1", "--memory-mb", "256", "--max-processes", "50", env=server.env())
    assert result.returncode == 0, result.stderr
    with server.client() as c:
        group = next(g for g in c.get("/api/v1/groups").json() if g["name"] == "g1")
    assert group["limits"] == {"memory_mb": 256, "cpu_percent": None, "max_processes": 50}
    usage = cli("group", "set-limits", "g1", env=server.env())
    assert usage.returncode == 2 and "--clear" in usage.stderr


def test_empty_job_cgroups_of_killed_agents_are_swept_at_start(cgroups):
    bases = agent_limits.detect().bases
    old, fresh = (bases["pids"] / f"left-{os.getpid()}-{n}" for n in ("old", "fresh"))
    old.mkdir()
    fresh.mkdir()
    try:
        os.utime(old, (1, 1))  # made long ago: its agent is gone
        agent_limits.detect()
        assert not old.exists()
        assert fresh.exists()  # could be another agent's job about to start
    finally:
        for path in (old, fresh):
            if path.exists():
                path.rmdir()


def test_limits_resources_and_runtimes_are_stored_on_postgresql(make_server, make_agent, pg_url):
    server = make_server(database_url=pg_url)
    make_agent(server, name="pg")
    with server.client() as c:
        _set_limits(c, "g1", memory_mb=512, max_processes=100)
        job = _run(c, "work", WORK, "python3", "g1")
        assert job["status"] == "Completed", job
        assert job["resources"]["limits"] == {"memory_mb": 512, "cpu_percent": None, "max_processes": 100}
        assert job["resources"]["peak_rss_bytes"] >= 40 * MIB
        assert c.put("/api/v1/runtimes/pgenv", json={"packages": ["requests==2.32.3"]}).status_code == 201
        assert [e["name"] for e in c.get("/api/v1/runtimes").json()] == ["pgenv"]
