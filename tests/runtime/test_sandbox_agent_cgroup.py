"""The CPU quota on the agent's own cgroup (Azure's hidden 25% cap) shows in Heartbeat and on /metrics."""

from __future__ import annotations

import contextlib
import os
import time
import uuid

import pytest

from outpost import cgroups
from tests.helpers.procs import wait_until


@pytest.fixture
def capped_cpu():
    """A cgroup v1 cpu directory with a 25% quota; whatever joined it goes back afterwards (root on v1)."""
    own = cgroups.v1_dirs().get("cpu")
    if own is None or not os.access(own, os.W_OK):
        if os.environ.get("CI"):
            pytest.fail("CI runs as root on cgroup v1: a cpu cgroup must be writable")
        pytest.skip("needs a writable cgroup v1 cpu hierarchy (root)")
    path = own / f"outpost-cap-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    (path / "cpu.cfs_period_us").write_text("100000")
    (path / "cpu.cfs_quota_us").write_text("25000")
    yield path
    for _ in range(50):  # bounded: a process may be starting in it while we move the others out
        for pid in (path / "cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError):
                (own / "cgroup.procs").write_text(pid)
        try:
            for sub in path.iterdir():  # job cgroups an agent made under it (empty once it stopped)
                if sub.is_dir():
                    sub.rmdir()
            path.rmdir()
            return
        except OSError:
            time.sleep(0.1)
    path.rmdir()


def test_the_agents_own_cpu_quota_is_in_heartbeat_and_metrics(server, make_agent, capped_cpu):
    agent = make_agent(server, name="capped", run_args=["--heartbeat-interval", "0.5"])
    assert agent.proc is not None
    beats = "Heartbeat | where Computer == 'capped' | project AgentCpuQuotaPercent_d"
    query = beats + " | where isnotnull(AgentCpuQuotaPercent_d)"
    with server.client() as c:
        # Uncapped at first (this machine sets no quota on the test processes): the column is left out.
        first = wait_until(lambda: c.post("/api/v1/query", json={"query": beats}).json()["rows"], 30, 0.3, "Heartbeat")
        assert first[0][0] is None
        (capped_cpu / "cgroup.procs").write_text(str(agent.proc.pid))
        rows = wait_until(lambda: c.post("/api/v1/query", json={"query": query}).json()["rows"], 30, 0.3, "Heartbeat")
        assert rows[0][0] == 25.0
        gauge = 'outpost_worker_agent_cpu_quota_percent{group="g1",worker="capped"} 25.0'
        wait_until(lambda: gauge in c.get("/metrics").text, 20, 0.3, "the quota gauge")
    agent.stop()
