"""Python runbooks run with the machine's python3, never the agent's virtualenv; only automationassets is shared."""

from __future__ import annotations

import json
import shutil
import sys

from tests.helpers.api import outputs, publish, start_job, wait_job
from tests.helpers.procs import cli, runbook_user_args

PROBE = """\
import sys
print("executable=" + sys.executable)
print("in_venv=" + str(sys.prefix != sys.base_prefix))
for name in ("fastapi", "outpost", "agent", "httpx"):
    try:
        __import__(name)
        print(name + "=importable")
    except ImportError:
        print(name + "=missing")
import automationassets
print("sdk=" + str(callable(automationassets.get_automation_variable)))
"""


def _probe(server, job_group: str = "g1") -> dict[str, str]:
    with server.client() as c:
        publish(c, "probe", PROBE, "python3")
        job_id = start_job(c, "probe", group=job_group)
        job = wait_job(c, job_id, timeout=60)
        assert job["status"] == "Completed", (job, outputs(c, job_id, "Error"))
        return dict(line.split("=", 1) for line in outputs(c, job_id, "Output"))


def test_python_runbook_runs_with_system_python3_not_the_agent_venv(server, make_agent, monkeypatch):
    assert sys.prefix != sys.base_prefix, "run the tests from the project's virtualenv"
    # The agent's venv first on PATH, as an activated venv or a systemd unit pointing into it has it.
    monkeypatch.setenv("PATH", f"{sys.prefix}/bin:/usr/local/bin:/usr/bin:/bin")
    agent = make_agent(server, name="py")
    seen = _probe(server)
    assert not seen["executable"].startswith(sys.prefix), seen
    assert seen["in_venv"] == "False"
    assert seen["fastapi"] == "missing" and seen["outpost"] == "missing" and seen["agent"] == "missing"
    assert seen["httpx"] == "missing"
    assert seen["sdk"] == "True"
    status = json.loads(cli("worker", "status", "--state-dir", str(agent.state_dir), "--json").stdout)
    assert status["runbook_python"] == seen["executable"]


def test_python_option_picks_the_interpreter_and_refuses_the_agent_venv(server, make_agent):
    system = shutil.which("python3", path="/usr/bin")
    assert system is not None
    make_agent(server, name="usr", run_args=["--python", system])
    assert _probe(server)["executable"] == system
    refused = make_agent(server, group="g2", name="venv", start=False)
    run = ["worker", "run", "--state-dir", str(refused.state_dir), "--python", sys.executable]
    result = cli(*run, *runbook_user_args(run), timeout=60)
    assert result.returncode != 0
    assert "own virtualenv" in result.stderr and "Traceback" not in result.stderr
