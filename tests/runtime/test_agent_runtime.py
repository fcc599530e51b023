"""What the agent enforces before and around a runbook: RunAs, GPG signatures, Python 3 only."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.helpers.api import outputs, publish, start_job, wait_job
from tests.helpers.procs import cli, runbook_user

REPO = Path(__file__).resolve().parents[2]
IS_ROOT = os.geteuid() == 0


def _need_root() -> None:
    if not IS_ROOT:
        if os.environ.get("CI"):
            pytest.fail("RunAs tests need root in CI (they create a local user)")
        pytest.skip("RunAs tests need root: they create a local user and the agent must switch to it")


@pytest.fixture
def local_user():
    _need_root()
    name = f"opt{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", name], check=True, capture_output=True)
    subprocess.run(["groupadd", f"{name}x"], check=True, capture_output=True)
    subprocess.run(["usermod", "-aG", f"{name}x", name], check=True, capture_output=True)
    yield name
    subprocess.run(["userdel", "--remove", name], capture_output=True)
    subprocess.run(["groupdel", f"{name}x"], capture_output=True)


WHOAMI = """echo "user=$(whoami)"
echo "uid=$(id -u)"
echo "groups=$(id -Gn)"
echo "home=$HOME"
echo "logname=$LOGNAME"
echo "cwd_owner=$(stat -c %U .)"
touch ./can-write && echo writable
"""

PY_WHOAMI = """import getpass, os, automationassets
print("py-user=" + getpass.getuser())
print("var=" + str(automationassets.get_automation_variable("greeting")))
"""


def test_runas_group_runs_jobs_as_the_credential_user(server, make_agent, local_user):
    agent = make_agent(server, group="ra")
    env = server.env()
    with server.client() as c:
        c.put("/api/v1/assets/credentials/svc", json={"username": local_user, "password": "unused-on-linux"})
        c.put("/api/v1/assets/variables/greeting", json={"value": "hi"})
        publish(c, "whoami", WHOAMI)
        publish(c, "pywhoami", PY_WHOAMI, "python3")

        before = wait_job(c, start_job(c, "whoami", group="ra"))
        assert before["status"] == "Completed"
        # no RunAs: a root agent's runbook user (tests/helpers/procs.runbook_user)
        assert f"user={runbook_user()}" in outputs(c, start_and_wait(c, "whoami", "ra"))

        set_runas = cli("group", "set-runas", "ra", "--credential", "svc", env=env)
        assert set_runas.returncode == 0, set_runas.stderr
        groups = {g["name"]: g for g in c.get("/api/v1/groups").json()}
        assert groups["ra"]["run_as_credential"] == "svc"

        job_id = start_and_wait(c, "whoami", "ra")
        lines = outputs(c, job_id)
        job = c.get(f"/api/v1/jobs/{job_id}").json()
        assert job["status"] == "Completed", (job, outputs(c, job_id, "Error"))
        uid = int(subprocess.run(["id", "-u", local_user], capture_output=True, text=True).stdout)
        assert f"user={local_user}" in lines
        assert f"uid={uid}" in lines
        assert f"{local_user}x" in next(line for line in lines if line.startswith("groups=")).split()
        assert f"home=/home/{local_user}" in lines
        assert f"logname={local_user}" in lines
        assert f"cwd_owner={local_user}" in lines and "writable" in lines

        py_id = start_and_wait(c, "pywhoami", "ra")
        py_job = c.get(f"/api/v1/jobs/{py_id}").json()
        assert py_job["status"] == "Completed", (py_job, outputs(c, py_id, "Error"))
        assert outputs(c, py_id) == [f"py-user={local_user}", "var=hi"]

        # deleting a credential that is some group's RunAs account is refused
        r = c.delete("/api/v1/assets/credentials/svc")
        assert r.status_code == 409 and "set-runas ra --clear" in r.json()["detail"]

        # a RunAs user that does not exist on the machine fails the job clearly, and runs nothing
        c.put("/api/v1/assets/credentials/ghost", json={"username": "no-such-user-xyz", "password": "p"})
        assert cli("group", "set-runas", "ra", "--credential", "ghost", env=env).returncode == 0
        ghost = c.get(f"/api/v1/jobs/{start_and_wait(c, 'whoami', 'ra')}").json()
        assert ghost["status"] == "Failed"
        assert ghost["status_reason"] == (
            f"RunAs user 'no-such-user-xyz' (RunAs credential 'ghost') does not exist on worker {agent.name}"
        )
        assert outputs(c, ghost["id"]) == []

        assert cli("group", "set-runas", "ra", "--clear", env=env).returncode == 0
        assert f"user={runbook_user()}" in outputs(c, start_and_wait(c, "whoami", "ra"))
        bad = cli("group", "set-runas", "ra", "--credential", "nope", env=env)
        assert bad.returncode == 1 and "credential 'nope' does not exist" in bad.stderr
        ours = [j["id"][:8] for j in c.get("/api/v1/jobs", params={"limit": 1000}).json()]
    # RunAs work dirs are removed too (only this server's jobs: other tests' agents run jobs meanwhile)
    assert not [d for d in Path("/tmp").glob("outpost-job-*") if d.name.split("-")[2] in ours]


def start_and_wait(c, runbook: str, group: str) -> str:
    job_id = start_job(c, runbook, group=group)
    wait_job(c, job_id)
    return job_id


def test_runas_without_root_is_a_clear_failure(local_user):
    """The agent's check, run as an unprivileged user (the agent itself can't run from root's venv).

    The checkout may be unreadable to that user (a clone in a 0700 `mktemp -d`, or under /root),
    so the module under test (stdlib only) is copied into a world-readable directory first.
    """
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from agent.runtime import resolve_run_as, RuntimeRefusal\n"
        "try:\n    resolve_run_as('someone', 'svc', 'w1')\nexcept RuntimeRefusal as e:\n    print(e)"
    )
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    with tempfile.TemporaryDirectory(prefix="outpost-runas-") as readable:
        os.chmod(readable, 0o755)
        package = Path(readable) / "agent"
        package.mkdir(mode=0o755)
        for name in ("__init__.py", "runtime.py"):
            shutil.copyfile(REPO / "agent" / name, package / name)
            os.chmod(package / name, 0o644)
        result = subprocess.run(
            [python, "-c", code, readable], capture_output=True, text=True, user=local_user, cwd="/tmp", timeout=30
        )
    assert result.stdout.strip() == (
        "RunAs user 'someone' (RunAs credential 'svc') needs the agent on w1 to run as root; "
        "it runs as an unprivileged user, so it cannot switch users"
    ), result.stderr


# -- signing ----------------------------------------------------------------------------------


def _gpg(home: Path, *args: str, data: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase", "", *args],
        input=data,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


@pytest.fixture
def signer(tmp_path):
    if shutil.which("gpg") is None:
        if os.environ.get("CI"):
            pytest.fail("gpg is required in CI (Debian package gnupg)")
        pytest.skip("gpg not installed (apt-get install gnupg)")
    homes = []

    def make(uid: str) -> Path:
        home = tmp_path / f"gnupg-{len(homes)}"
        home.mkdir(mode=0o700)
        homes.append(home)
        _gpg(home, "--quick-generate-key", uid, "ed25519", "sign", "never")
        return home

    yield make
    for home in homes:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True)


SIGNED_BODY = 'echo "signed and verified"\ntouch "$1"\n'


def test_signed_runbooks_only(server, make_agent, signer, tmp_path, shared_dir):
    trusted_home = signer("Outpost Signer <signer@example.test>")
    rogue_home = signer("Rogue <rogue@example.test>")
    keys = tmp_path / "trusted"
    keys.mkdir()
    (keys / "signer.asc").write_text(_gpg(trusted_home, "--armor", "--export", "signer@example.test").stdout)
    make_agent(server, run_args=["--trusted-keys", str(keys)])
    good = _gpg(trusted_home, "--clearsign", data=SIGNED_BODY).stdout
    tampered = good.replace('echo "signed and verified"', 'echo "signed and verified"; echo evil')
    assert tampered != good
    rogue = _gpg(rogue_home, "--clearsign", data=SIGNED_BODY).stdout
    cases = {"good": good, "tampered": tampered, "unsigned": SIGNED_BODY, "rogue": rogue}
    results = {}
    with server.client() as c:
        for name, content in cases.items():
            publish(c, f"rb-{name}", content)
            marker = shared_dir / f"ran-{name}"
            job_id = start_job(c, f"rb-{name}", params=[{"name": None, "value": str(marker)}])
            results[name] = (wait_job(c, job_id), outputs(c, job_id), marker)
    job, lines, marker = results["good"]
    assert job["status"] == "Completed", job
    assert lines == ["signed and verified"] and marker.exists()
    for name in ("tampered", "unsigned", "rogue"):
        job, lines, marker = results[name]
        assert job["status"] == "Failed", (name, job)
        assert "InvalidRunbookSignature" in job["status_reason"], job["status_reason"]
        assert lines == [] and not marker.exists(), name  # nothing ran
    assert "not signed" in results["unsigned"][0]["status_reason"]
    assert "changed after signing" in results["tampered"][0]["status_reason"]
    assert "no trusted key" in results["rogue"][0]["status_reason"]


def test_without_trusted_keys_signed_and_unsigned_runbooks_run(server, make_agent, signer):
    make_agent(server)
    home = signer("Someone <someone@example.test>")
    signed_py = _gpg(home, "--clearsign", data="-0 or print('dash-escaped line kept')\nprint('signed python')\n").stdout
    assert "\n- -0 or print" in signed_py  # gpg dash-escapes lines that start with '-'
    with server.client() as c:
        publish(c, "plain", "echo plain\n")
        publish(c, "signedpy", signed_py, "python3")
        plain = start_job(c, "plain")
        signed = start_job(c, "signedpy")
        assert wait_job(c, plain)["status"] == "Completed"
        assert wait_job(c, signed)["status"] == "Completed", outputs(c, signed, "Error")
        assert outputs(c, signed) == ["dash-escaped line kept", "signed python"]


# -- Python 2 ---------------------------------------------------------------------------------


def test_python2_runbook_fails_fast_with_a_clear_message(server, make_agent):
    make_agent(server)
    with server.client() as c:
        publish(c, "py2", 'import sys\nprint "hello from python 2"\n', "python3")
        publish(c, "typo", "def f(:\n    pass\n", "python3")
        py2 = wait_job(c, start_job(c, "py2"))
        typo = wait_job(c, start_job(c, "typo"))
        assert py2["status"] == "Failed" and py2["started_at"] is None
        assert py2["status_reason"].startswith("Python 2 is not supported: runbook py2 does not parse as Python 3")
        assert outputs(c, py2["id"]) == []
        assert typo["status"] == "Failed"
        assert typo["status_reason"].startswith("runbook typo has a Python syntax error (line 1")


def test_environment_and_params_reach_python_runbook(server, make_agent):
    make_agent(server)
    script = (
        "import os, sys\n"
        "print(os.environ['AUTOMATION_JOB_ID'])\n"
        "print(sys.argv[1:])\n"
        "print('token-in-env' if os.environ.get('AUTOMATION_ASSETS_TOKEN') else 'no token')\n"
        "print('credential leaked' if any('opw_' in v for v in os.environ.values()) else 'no credential')\n"
    )
    with server.client() as c:
        publish(c, "env", script, "python3")
        job_id = start_job(
            c,
            "env",
            params=[{"name": None, "value": "a b"}, {"name": "days", "value": "7"}, {"name": None, "value": "c"}],
        )
        assert wait_job(c, job_id)["status"] == "Completed"
        assert outputs(c, job_id) == [job_id, "['a b', 'c', '--days', '7']", "token-in-env", "no credential"]
