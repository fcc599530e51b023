"""Runbooks never reach the worker's credential: a root agent refuses to run them as root, with or without RunAs.

These run as root (the agent must be able to switch users); the tests create their users and remove them.
"""

from __future__ import annotations

import json
import os
import pwd
import stat
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from tests.helpers.api import outputs, publish, start_job, wait_job
from tests.helpers.procs import OUTPOST, cli, wait_until


def _need_root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("runbook isolation tests need root in CI (the agent switches users)")
        pytest.skip("needs root: the agent switches users")


@pytest.fixture
def runas_user() -> Iterator[str]:
    _need_root()
    name = f"oriso{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/sh", name], check=True, capture_output=True)
    yield name
    subprocess.run(["userdel", name], capture_output=True)


def _run_agent(state_dir: os.PathLike[str], *extra: str) -> subprocess.CompletedProcess[str]:
    args = [*OUTPOST, "worker", "run", "--state-dir", str(state_dir), *extra]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def test_root_agent_refuses_to_run_runbooks_as_root(server, make_agent):
    _need_root()
    try:
        pwd.getpwnam("outpost-runbook")
        pytest.skip("this machine has the outpost-runbook user: a root agent uses it instead of refusing")
    except KeyError:
        pass
    agent = make_agent(server, name="rootonly", start=False)
    for extra in ((), ("--runbook-user", "root")):
        result = _run_agent(agent.state_dir, *extra)
        assert result.returncode != 0, (extra, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        assert "credential" in result.stderr, result.stderr
        if not extra:  # names both fixes
            assert all(fix in result.stderr for fix in ("--runbook-user", "useradd", "outpost-runbook"))
        else:
            assert "uid 0" in result.stderr


PEEK = (
    'echo "user=$(id -un)"\n'
    "cat {credential} >/dev/null 2>&1 && echo credential=read || echo credential=denied\n"
    "cat {registration} >/dev/null 2>&1 && echo registration=read || echo registration=denied\n"
    'echo "key=${{OUTPOST_REGISTRATION_KEY:-none}}"\n'
    'grep -l opw_ /proc/[0-9]*/environ 2>/dev/null | head -1 | sed "s/^/environ=/"\n'
)


def test_runas_runbooks_cannot_read_the_credential_and_root_runas_is_refused(
    server, make_agent, runas_user, monkeypatch
):
    monkeypatch.setenv("OUTPOST_REGISTRATION_KEY", server.registration_key)
    agent = make_agent(server, group="ra", name="runas", start=False)
    credential = agent.state_dir / "credential"
    credential.chmod(0o644)  # loosened since `register`: the agent makes it private again at start
    agent.start()
    wait_until(lambda: "0600 again" in agent.log(), 30, 0.1, "the agent to tighten the credential")
    assert stat.S_IMODE(credential.stat().st_mode) == 0o600
    script = PEEK.format(credential=credential, registration=agent.state_dir / "registration.json")
    env = server.env()
    with server.client() as c:
        c.put("/api/v1/assets/credentials/svc", json={"username": runas_user, "password": "unused"})
        c.put("/api/v1/assets/credentials/superuser", json={"username": "root", "password": "unused"})
        publish(c, "peek", script)

        assert cli("group", "set-runas", "ra", "--credential", "svc", env=env).returncode == 0
        job_id = start_job(c, "peek", group="ra")
        job = wait_job(c, job_id, timeout=30)
        assert job["status"] == "Completed", (job, outputs(c, job_id, "Error"))
        assert outputs(c, job_id, "Output") == [
            f"user={runas_user}",
            "credential=denied",
            "registration=denied",
            "key=none",
        ]

        assert cli("group", "set-runas", "ra", "--credential", "superuser", env=env).returncode == 0
        job_id = start_job(c, "peek", group="ra")
        job = wait_job(c, job_id, timeout=30)
        assert job["status"] == "Failed" and "is root (uid 0)" in job["status_reason"], job
        assert outputs(c, job_id, "Output") == []  # nothing ran


HIDE_PEEK = PEEK + (
    # the agent's own view of the state dir, through /proc, and an attempt to unmount the cover in a
    # user namespace of the runbook's own: both must fail
    "for p in /proc/[0-9]*; do cat $p/root{credential} 2>/dev/null && echo via-proc=$p; done\n"
    "unshare -Urm sh -c 'umount {state} 2>/dev/null; cat {credential}' >/dev/null 2>&1 && echo unmounted=read\n"
    "echo written > here.txt && cat here.txt\n"
    "ls -A {state} | tr '\\n' ' ' | sed 's/^/state=/'; echo\n"
)


def test_non_root_agent_hides_its_state_dir_from_runbooks_in_a_mount_namespace(server, make_agent, monkeypatch):
    """A non-root agent's runbooks run as its own user, yet find its state dir empty but for their work dir.

    The agent runs as uid 65534 in a user namespace (the test is root; the checkout and interpreter may sit
    in root-only directories, so it keeps owning them there): not root to itself, no capabilities outside.
    """
    _need_root()
    monkeypatch.setenv("OUTPOST_REGISTRATION_KEY", server.registration_key)
    agent = make_agent(server, group="nr", name="nonroot", start=False)
    state = agent.state_dir.absolute()
    log = open(agent.log_path, "a")  # noqa: SIM115
    agent.proc = subprocess.Popen(  # type: ignore[assignment]
        ["unshare", "-U", "--map-user=65534", "--map-group=65534", "--", *OUTPOST, "worker", "run",
         "--state-dir", str(state), "--stop-grace", "2", "--lease-renew", "0.5", "--heartbeat-interval", "1"],
        stdout=log, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    wait_until(lambda: "the credential is hidden from them" in agent.log(), 30, 0.1, "the agent's start-up line")
    status = json.loads((state / "status.json").read_text())
    assert status["runbook_user"] is None and status["runbooks_can_read_credential"] is False, status
    assert status["credential_hidden_by"] == "mount namespace"
    diagnosed = cli("diagnose", "--state-dir", str(state), "--check", "sandbox.credential", "--json")
    (check,) = json.loads(diagnosed.stdout)["results"]
    assert check["status"] == "pass" and "state dir hidden from them (mount namespace)" in check["finding"], check
    script = HIDE_PEEK.format(credential=state / "credential", registration=state / "registration.json", state=state)
    with server.client() as c:
        publish(c, "peek", script)
        job_id = start_job(c, "peek", group="nr")
        job = wait_job(c, job_id, timeout=30)
        assert job["status"] == "Completed", (job, outputs(c, job_id, "Error"), agent.log())
        assert outputs(c, job_id, "Output") == [
            "user=nobody",
            "credential=denied",
            "registration=denied",
            "key=none",
            "written",
            "state=work ",
        ]
        assert job["resources"]["cpu_user_s"] + job["resources"]["cpu_system_s"] > 0  # wait4 still saw it

        # a stop still reaches the runbook's process group (the wrappers exec'd into it; nothing in between)
        publish(c, "wait", 'echo started; trap "echo terminated; exit 3" TERM; sleep 60 & wait')
        job_id = start_job(c, "wait", group="nr")
        wait_until(lambda: outputs(c, job_id, "Output") == ["started"], 30, 0.1, "the runbook to start")
        c.post(f"/api/v1/jobs/{job_id}/stop")
        job = wait_job(c, job_id, timeout=30)
        assert job["status"] == "Stopped" and outputs(c, job_id, "Output") == ["started", "terminated"], job
    assert (state / "credential").exists()  # hidden from the runbook only
