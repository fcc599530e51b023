"""`diagnose` reports the CPU quota and memory limit on the agent's own cgroup (Azure's hidden 25% cap)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from outpost import cgroups
from tests.diagnostics.conftest import iso_ago, run_cli


@pytest.fixture
def capped_cgroup():
    """A cgroup v1 cpu directory with a 25% quota, removed afterwards (needs root on cgroup v1)."""
    own = cgroups.v1_dirs().get("cpu")
    if own is None or not os.access(own, os.W_OK):
        if os.environ.get("CI"):
            pytest.fail("CI runs as root on cgroup v1: a cpu cgroup must be writable")
        pytest.skip("needs a writable cgroup v1 cpu hierarchy (root)")
    path = own / f"outpost-diag-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    (path / "cpu.cfs_period_us").write_text("100000")
    (path / "cpu.cfs_quota_us").write_text("25000")
    yield path
    for pid in (path / "cgroup.procs").read_text().split():
        (own / "cgroup.procs").write_text(pid)
    path.rmdir()


def test_a_cpu_quota_on_the_agent_is_a_warning_naming_it(app, pki, make_state, agent_proc, capped_cgroup: Path):
    proc = agent_proc()
    (capped_cgroup / "cgroup.procs").write_text(str(proc.pid))
    status = {"last_poll_ok": iso_ago(5), "pid": proc.pid, "limits_enforced_by": "cgroup v1"}
    state = make_state(app.url, ca_file=pki.ca.pem, status=status)
    run = run_cli("--state-dir", str(state), "--check", "sandbox.cgroup")
    r = run.result("sandbox.cgroup")
    assert (run.rc, r["status"]) == (0, "warn"), r
    assert "CPU quota 25% of one CPU" in r["finding"] and "job limits are enforced by cgroup v1" in r["finding"]
    assert "CPUQuota=" in r["remediation"]
    assert r["evidence"]["cpu_quota_percent"] == 25.0


def test_an_uncapped_agent_passes(app, pki, make_state, agent_proc):
    proc = agent_proc()
    state = make_state(app.url, ca_file=pki.ca.pem, status={"last_poll_ok": iso_ago(5), "pid": proc.pid})
    r = run_cli("--state-dir", str(state), "--check", "sandbox.cgroup").result("sandbox.cgroup")
    own = cgroups.limits_of(proc.pid)
    if own is not None and own.cpu_percent is not None and own.cpu_percent < 100:
        pytest.skip("this machine caps the test processes' CPU itself")
    assert r["status"] == "pass", r
    assert "no CPU quota" in r["finding"] or own is None
