"""A root agent's runbooks run as its runbook user, so their python3 must be one that user can run."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from tests.helpers.procs import cli, runbook_user
from tests.runtime.test_sandbox_python import _probe

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a runbook user needs a root agent")


@pytest.fixture
def hidden_python(tmp_path):
    """A python3 first on PATH in a root-only directory (like /root/.pyenv/shims under a 0700 /root)."""
    system = shutil.which("python3", path="/usr/bin")
    assert system is not None
    hidden = tmp_path / "root-only"
    hidden.mkdir(mode=0o700)
    os.symlink(system, hidden / "python3")
    return hidden


def test_root_agent_skips_a_python3_its_runbook_user_cannot_run(server, make_agent, monkeypatch, hidden_python):
    monkeypatch.setenv("PATH", f"{hidden_python}:/usr/local/bin:/usr/bin:/bin")
    agent = make_agent(server, name="py-user")
    seen = _probe(server)
    assert not seen["executable"].startswith(str(hidden_python)), seen
    status = json.loads(cli("worker", "status", "--state-dir", str(agent.state_dir), "--json").stdout)
    assert status["runbook_python"] == seen["executable"]
    assert "skipped" in agent.log_path.read_text() and str(hidden_python / "python3") in agent.log_path.read_text()


def test_python_option_the_runbook_user_cannot_run_is_refused_naming_path_and_user(server, make_agent, hidden_python):
    refused = make_agent(server, name="py-refused", start=False)
    chosen = str(hidden_python / "python3")
    result = cli(
        "worker", "run", "--state-dir", str(refused.state_dir), "--python", chosen,
        "--runbook-user", runbook_user(), timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert chosen in result.stderr and runbook_user() in result.stderr, result.stderr
    assert str(hidden_python) in result.stderr and "0700" in result.stderr
    assert "Traceback" not in result.stderr
