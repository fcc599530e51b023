"""The limits on the agent's own cgroup (Azure's hidden 25% CPU cap) show in Heartbeat, /metrics and diagnose."""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from outpost import cgroups
from tests.helpers.procs import cli, wait_until

GIB = 1 << 30


def _leave(own: Path, path: Path) -> None:
    """Move whatever joined `path` back to `own` and remove it (and the job cgroups an agent made in it)."""
    for _ in range(50):  # bounded: a process may be starting in it while we move the others out
        for pid in (path / "cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError):
                (own / "cgroup.procs").write_text(pid)
        try:
            for sub in path.iterdir():
                if sub.is_dir():
                    sub.rmdir()
            path.rmdir()
            return
        except OSError:
            time.sleep(0.1)
    path.rmdir()


@pytest.fixture
def capped() -> Iterator[dict[str, Path]]:
    """cgroup v1 cpu and memory directories: a 25% CPU quota and a 1 GiB memory limit (root on v1)."""
    dirs = cgroups.v1_dirs()
    if not all(c in dirs and os.access(dirs[c], os.W_OK) for c in ("cpu", "memory")):
        if os.environ.get("CI"):
            pytest.fail("CI runs as root on cgroup v1: cpu and memory cgroups must be writable")
        pytest.skip("needs writable cgroup v1 cpu and memory hierarchies (root)")
    name = f"outpost-cap-{uuid.uuid4().hex[:8]}"
    made = {c: dirs[c] / name for c in ("cpu", "memory")}
    for path in made.values():
        path.mkdir()
    try:
        (made["cpu"] / "cpu.cfs_period_us").write_text("100000")
        (made["cpu"] / "cpu.cfs_quota_us").write_text("25000")
        (made["memory"] / "memory.limit_in_bytes").write_text(str(GIB))
        yield made
    finally:
        for ctrl, path in made.items():
            _leave(dirs[ctrl], path)


def test_the_agents_own_limits_are_in_heartbeat_metrics_and_diagnose(server, make_agent, capped):
    agent = make_agent(server, name="capped", run_args=["--heartbeat-interval", "0.5"])
    assert agent.proc is not None
    beats = "Heartbeat | where Computer == 'capped' | project AgentCpuQuotaPercent_d, AgentMemoryLimitMB_d"
    with server.client() as c:
        # Uncapped at first (this machine sets no limits on the test processes): the columns are left out.
        first = wait_until(lambda: c.post("/api/v1/query", json={"query": beats}).json()["rows"], 30, 0.3, "Heartbeat")
        assert first[0] == [None, None]
        for path in capped.values():
            (path / "cgroup.procs").write_text(str(agent.proc.pid))
        query = beats + " | where isnotnull(AgentCpuQuotaPercent_d) and isnotnull(AgentMemoryLimitMB_d)"
        rows = wait_until(lambda: c.post("/api/v1/query", json={"query": query}).json()["rows"], 30, 0.3, "capped")
        assert rows[0] == [25.0, 1024.0]
        gauges = (
            'outpost_worker_agent_cpu_quota_percent{group="g1",worker="capped"} 25.0',
            'outpost_worker_agent_memory_limit_megabytes{group="g1",worker="capped"} 1024.0',
        )
        wait_until(lambda: all(g in c.get("/metrics").text for g in gauges), 20, 0.3, "the limit gauges")
    run = cli("diagnose", "--state-dir", str(agent.state_dir), "--check", "sandbox.cgroup", "--json")
    [result] = [r for r in json.loads(run.stdout)["results"] if r["id"] == "sandbox.cgroup"]
    assert result["status"] == "warn", result
    assert "CPU quota 25% of one CPU and memory limit 1024 MiB" in result["finding"], result
    assert "job limits are enforced by cgroup v1" in result["finding"], result
    assert result["evidence"]["memory_limit_bytes"] == GIB
    agent.stop()
