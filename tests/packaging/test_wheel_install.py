"""A worker machine is not a clone: the wheel, installed into a clean venv, registers and runs a job.

The venv gets the built wheel by a real `pip install` (its `outpost` script on the venv's PATH), and
beside it exactly the wheel's declared runtime dependencies, followed transitively with their
markers and extras: those distributions of this dev venv, linked file by file into one directory
named by a .pth file. Downloading and unpacking them from the package index was most of the
test's time (70-190 s); what it proved stays: an undeclared dependency is missing there (no dev
tool is importable), and `pip check` holds the declared versions to what constraints.txt installed.
"""

from __future__ import annotations

import email
import os
import shutil
import signal
import subprocess
import sys
import zipfile
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


def link_dependencies(requires: list[str], into: Path) -> set[str]:
    """Symlink into `into`, file by file, the distributions of this venv that `requires` needs, transitively
    (environment markers and extras evaluated as pip does). Returns their names."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    linked: set[str] = set()
    done: set[tuple[str, str]] = set()
    todo = [(Requirement(r), "") for r in requires]
    while todo:
        req, parent_extra = todo.pop()
        if req.marker and not req.marker.evaluate({"extra": parent_extra}):
            continue
        name = canonicalize_name(req.name)
        dist = metadata.distribution(name)  # not installed here: the dev venv lacks a runtime dependency
        assert req.specifier.contains(dist.version, prereleases=True), (str(req), dist.version)
        for extra in ["", *req.extras]:
            if (name, extra) in done:
                continue
            done.add((name, extra))
            todo += [(Requirement(r), extra) for r in dist.requires or []]
        if name in linked:
            continue
        linked.add(name)
        assert dist.files is not None, f"{name} has no RECORD: cannot tell its files"
        for file in dist.files:
            if file.parts[0] == ".." or "__pycache__" in file.parts:  # scripts in bin/, byte code
                continue
            target = into / file
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(Path(dist.locate_file(file)).resolve())
    return linked


def clean_env() -> dict[str, str]:
    """No PYTHONPATH: the installed package, not this checkout, must be what runs."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "OUTPOST_STATE_DIR")}


@pytest.mark.slow
def test_wheel_in_a_clean_venv_registers_and_runs_a_job(server: Server, tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    venv = tmp_path / "venv"
    assert run([sys.executable, "-m", "venv", "--without-pip", venv], 120).returncode == 0
    python = venv / "bin/python"
    site = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], 60, env=clean_env())
    deps = tmp_path / "deps"
    deps.mkdir()
    with zipfile.ZipFile(wheel) as whl:
        (meta,) = [n for n in whl.namelist() if n.endswith(".dist-info/METADATA")]
        requires = email.message_from_bytes(whl.read(meta)).get_all("Requires-Dist") or []
    linked = link_dependencies(requires, deps)
    assert {"fastapi", "httpx", "duckdb-kql"} <= linked and "pytest" not in linked, linked
    (Path(site.stdout.strip()) / "outpost-test-deps.pth").write_text(f"{deps}\n")
    # This venv's pip, run for the new one (--python): a real install of the wheel and its script.
    pip = [sys.executable, "-m", "pip", "--python", python]
    install = run([*pip, "install", "--quiet", "--no-deps", "--no-compile", wheel], 300, env=clean_env())
    assert install.returncode == 0, install.stderr
    check = run([*pip, "check"], 120, env=clean_env())  # every declared requirement met, versions included
    assert check.returncode == 0, check.stdout + check.stderr

    env = clean_env()
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"  # as an activated venv has it
    outpost = shutil.which("outpost", path=env["PATH"])
    assert outpost == str(venv / "bin/outpost"), outpost
    where = run([python, "-c", "import outpost, agent; print(outpost.__file__, agent.__file__)"], 60,
                env=env, cwd=tmp_path)  # fmt: skip
    assert where.stdout.startswith(str(venv)) and str(REPO) not in where.stdout, where.stdout
    dev_only = run([python, "-c", "import pytest"], 60, env=env, cwd=tmp_path)  # only what the wheel declares
    assert dev_only.returncode != 0 and "No module named 'pytest'" in dev_only.stderr, dev_only.stderr
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
