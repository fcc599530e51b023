"""A worker machine is not a clone: the wheel, installed into a clean venv, registers and runs a job."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.api import outputs, publish, start_job, wait_job
from tests.helpers.procs import Server, runbook_user_args

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("outpost", "automation", "agent", "telemetry", "diagnostics")


def run(args: list[str | Path], timeout: float, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, **kwargs)  # type: ignore[call-overload]


def build_wheel(tmp_path: Path) -> Path:
    """Built from a copy of the sources, so the checkout (maybe read-only) gets no build/ or egg-info."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for package in PACKAGES:
        shutil.copytree(REPO / package, src / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path / "dist"
    result = run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", dist, src], 600)
    assert result.returncode == 0, result.stderr
    (wheel,) = dist.glob("outpost-*.whl")
    return wheel


def clean_env() -> dict[str, str]:
    """No PYTHONPATH: the installed package, not this checkout, must be what runs."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "OUTPOST_STATE_DIR")}


@pytest.mark.slow
def test_wheel_in_a_clean_venv_registers_and_runs_a_job(server: Server, tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    venv = tmp_path / "venv"
    assert run([sys.executable, "-m", "venv", venv], 120).returncode == 0
    install = run(
        # --no-compile: byte-compiling every dependency is most of the install's time, and the test
        # runs each program once; Python compiles what it imports anyway.
        [venv / "bin/python", "-m", "pip", "install", "--quiet", "--no-compile", "-c", REPO / "constraints.txt", wheel],
        600,
        env=clean_env(),
    )
    if install.returncode != 0 and not os.environ.get("CI") and "NewConnectionError" in install.stderr:
        pytest.skip(f"the package index is unreachable from here: {install.stderr.strip().splitlines()[-1]}")
    assert install.returncode == 0, install.stderr

    outpost = venv / "bin/outpost"
    env = clean_env()
    where = run([venv / "bin/python", "-c", "import outpost, agent; print(outpost.__file__, agent.__file__)"], 60,
                env=env, cwd=tmp_path)  # fmt: skip
    assert where.stdout.startswith(str(venv)) and str(REPO) not in where.stdout, where.stdout
    version = run([outpost, "--version"], 60, env=env, cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("outpost "), version.stderr

    state = tmp_path / "worker-state"
    register = run(
        [outpost, "worker", "register", "--url", server.url, "--key", server.registration_key,
         "--group", "installed", "--name", "wheel1", "--state-dir", state],
        60, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert register.returncode == 0, register.stderr
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [str(outpost), "worker", "run", "--state-dir", str(state), "--heartbeat-interval", "1", *runbook_user_args([])],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
    )  # fmt: skip
    try:
        with server.client() as c:
            publish(c, "pyhello", 'import sys, automationassets\nprint("hello", *sys.argv[1:])\n', "python3")
            job_id = start_job(c, "pyhello", group="installed", params=[{"value": "wheel"}])
            job = wait_job(c, job_id, timeout=90)
            assert job["status"] == "Completed", ((tmp_path / "worker.log").read_text(), job)
            assert outputs(c, job_id) == ["hello wheel"]
            assert job["worker"] == "wheel1"
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(5)
        log.close()
