"""A runbook's limits narrow its group's: per resource the stricter applies, with real jobs on a real agent."""

from __future__ import annotations

from tests.helpers.api import outputs, publish, start_job, wait_job
from tests.helpers.procs import cli
from tests.runtime.test_sandbox_limits import HOG, WORK, cgroups  # noqa: F401  (a fixture)

MIB = 1024 * 1024


def test_a_runbook_limit_narrows_its_groups_for_its_jobs(server, make_agent, cgroups):  # noqa: F811
    make_agent(server, name="rbl")
    with server.client() as c:
        assert c.put("/api/v1/groups/g1/limits", json={"memory_mb": 512, "max_processes": 50}).status_code == 200
        publish(c, "hog", HOG, "python3")
        publish(c, "work", WORK, "python3")
    # The runbook's memory limit is the stricter one; its process limit is looser, so the group's stays.
    set_ = cli("runbook", "set-limits", "hog", "--memory-mb", "64", "--max-processes", "500", env=server.env())
    assert set_.returncode == 0, set_.stderr
    assert "memory_mb 64" in set_.stdout
    with server.client() as c:
        assert c.get("/api/v1/runbooks/hog").json()["limits"] == {
            "memory_mb": 64,
            "cpu_percent": None,
            "max_processes": 500,
        }
        hog = wait_job(c, start_job(c, "hog", group="g1"), timeout=60)
        assert hog["status"] == "Failed", hog
        assert hog["status_reason"].startswith("out of memory") and "64 MiB" in hog["status_reason"], hog
        assert "survived" not in outputs(c, hog["id"], "Output")
        res = hog["resources"]
        assert res["limits"] == {"memory_mb": 64, "cpu_percent": None, "max_processes": 50}
        assert res["oom_killed"] is True and res["memory_peak_bytes"] <= 64 * MIB
        # A runbook without limits of its own runs under its group's alone.
        work = wait_job(c, start_job(c, "work", group="g1"), timeout=60)
        assert work["status"] == "Completed", work
        assert work["resources"]["limits"] == {"memory_mb": 512, "cpu_percent": None, "max_processes": 50}
    shown = cli("job", "show", hog["id"], env=server.env())
    assert "memory 64 MiB" in shown.stdout and "50 processes" in shown.stdout, shown.stdout
    rb = cli("runbook", "show", "hog", env=server.env())
    assert "job limits: memory_mb 64, max_processes 500" in rb.stdout, rb.stdout


def test_a_job_keeps_the_runbook_limits_it_was_created_with(server, make_agent):
    agent = make_agent(server, name="snap", start=False, run_args=["--limits", "rlimit"])
    with server.client() as c:
        publish(c, "spin", "print('ran')\n", "python3")
        assert c.put("/api/v1/runbooks/spin/limits", json={"cpu_percent": 20}).status_code == 200
        queued = start_job(c, "spin", group="g1")
        # Cleared after the job was queued: the job still carries the quota, which rlimits cannot enforce.
        assert c.put("/api/v1/runbooks/spin/limits", json={}).status_code == 200
        agent.start()
        job = wait_job(c, queued, timeout=60)
        assert job["status"] == "Failed", job
        assert "CPU quota of 20% cannot be enforced" in job["status_reason"], job["status_reason"]
        assert outputs(c, job["id"]) == []
        later = wait_job(c, start_job(c, "spin", group="g1"), timeout=60)
        assert later["status"] == "Completed", later
        assert later["resources"]["limits"] is None


def test_runbook_limits_are_validated(server):
    with server.client() as c:
        publish(c, "rb", "echo hi\n", "bash")
        bad = c.put("/api/v1/runbooks/rb/limits", json={"cpu_percent": 0})
        assert bad.status_code == 422 and "cpu_percent" in bad.text
        assert c.put("/api/v1/runbooks/nope/limits", json={"memory_mb": 64}).status_code == 404
        assert c.get("/api/v1/runbooks/nope/limits").status_code == 404
    usage = cli("runbook", "set-limits", "rb", env=server.env())
    assert usage.returncode == 2 and "--clear" in usage.stderr
    missing = cli("runbook", "set-limits", "nope", "--memory-mb", "64", env=server.env())
    assert missing.returncode != 0 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
