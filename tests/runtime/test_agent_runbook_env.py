"""A runbook inherits none of the agent's secrets or its virtualenv; a root agent's cannot read its credential."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from tests.helpers.api import outputs, publish, start_job, wait_job
from tests.helpers.procs import cli

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


@pytest.fixture
def plain_user():
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("runbook-user tests need root in CI (they create a local user)")
        pytest.skip("needs root: creates a local user and the agent must switch to it")
    name = f"orb{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/sh", name], check=True, capture_output=True)
    yield name
    subprocess.run(["userdel", name], capture_output=True)


def test_root_agent_runs_runbooks_as_the_runbook_user_who_cannot_read_the_credential(server, make_agent, plain_user):
    agent = make_agent(server, name="guarded", start=False, run_args=["--runbook-user", plain_user])
    credential = agent.state_dir / "credential"
    script = (
        'echo "user=$(id -un)"\n'
        f"cat {credential} >/dev/null 2>&1 && echo credential=read || echo credential=denied\n"
        'echo "key=${OUTPOST_REGISTRATION_KEY:-none}"\n'
    )
    agent.start()
    with server.client() as c:
        publish(c, "peek", script)
        publish(
            c, "pypeek", f"import getpass\nprint('py=' + getpass.getuser())\nopen({str(credential)!r})\n", "python3"
        )
        job_id = start_job(c, "peek")
        job = wait_job(c, job_id, timeout=30)
        assert job["status"] == "Completed", (job, outputs(c, job_id, "Error"))
        assert outputs(c, job_id, "Output") == [f"user={plain_user}", "credential=denied", "key=none"]
        py_id = start_job(c, "pypeek")
        py_job = wait_job(c, py_id, timeout=30)
        assert py_job["status"] == "Failed" and outputs(c, py_id, "Output") == [f"py={plain_user}"]
        assert any("PermissionError" in line for line in outputs(c, py_id, "Error"))
    status = json.loads(cli("worker", "status", "--state-dir", str(agent.state_dir), "--json").stdout)
    assert status["runbook_user"] == plain_user and status["runbooks_can_read_credential"] is False


def test_unknown_runbook_user_is_one_readable_line(server, make_agent):
    agent = make_agent(server, name="typo", start=False)
    if os.geteuid() != 0:
        pytest.skip("a non-root agent cannot switch users at all")
    result = cli("worker", "run", "--state-dir", str(agent.state_dir), "--runbook-user", "no-such-user-xyz")
    assert result.returncode != 0
    assert "--runbook-user" in result.stderr and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr
