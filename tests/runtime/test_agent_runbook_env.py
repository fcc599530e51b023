"""A runbook inherits none of the agent's own secrets or its virtualenv."""

from __future__ import annotations

import sys

from tests.helpers.api import outputs, publish, start_job, wait_job

SHOW = (
    'echo "key=${OUTPOST_REGISTRATION_KEY:-none} token=${OUTPOST_TOKEN:-none} venv=${VIRTUAL_ENV:-none}"\n'
    'echo "outpost_vars=$(env | grep -c ^OUTPOST_)"\n'
    'echo "path=$PATH"\n'
    'echo "job=$AUTOMATION_JOB_ID"\n'
)


def test_runbook_environment_has_no_agent_secrets(server, make_agent, monkeypatch):
    venv_bin = f"{sys.prefix}/bin"
    monkeypatch.setenv("OUTPOST_REGISTRATION_KEY", "reg-key-must-not-leak")
    monkeypatch.setenv("OUTPOST_TOKEN", "admin-token-must-not-leak")
    monkeypatch.setenv("VIRTUAL_ENV", sys.prefix)
    monkeypatch.setenv("PATH", f"{venv_bin}:/usr/local/bin:/usr/bin:/bin")
    make_agent(server, name="clean")
    with server.client() as c:
        publish(c, "show", SHOW)
        job_id = start_job(c, "show")
        job = wait_job(c, job_id, timeout=30)
        assert job["status"] == "Completed", job
        lines = outputs(c, job_id)
    assert lines[0] == "key=none token=none venv=none"
    assert lines[1] == "outpost_vars=0"
    path = lines[2].removeprefix("path=").split(":")
    assert "/usr/bin" in path and (venv_bin not in path or sys.prefix == sys.base_prefix)
    assert lines[3] == f"job={job_id}"
