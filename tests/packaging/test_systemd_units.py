"""The shipped systemd units, installed by packaging/install.sh, pass `systemd-analyze verify`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "packaging" / "install.sh"
UNITS = ("outpost-worker.service", "outpost-server.service")


def need_systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is required in CI (Debian package systemd; scripts/system-deps.sh)")
        pytest.skip("systemd-analyze not installed (apt-get install systemd)")
    return found


def install_root(tmp_path: Path) -> Path:
    """A root laid out as install.sh leaves a machine, with a copy of the host's systemd units (targets)."""
    root = tmp_path / "root"
    if Path("/usr/lib/systemd/system").is_dir():
        shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "dev").mkdir(parents=True)
    (root / "dev/null").touch()  # masked units point at /dev/null
    result = subprocess.run(
        ["bash", str(INSTALL), "--units-only"],
        env={**os.environ, "DESTDIR": str(root)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return root


def verify(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [need_systemd_analyze(), "verify", f"--root={root}", *(f"/etc/systemd/system/{u}" for u in UNITS)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_units_as_installed_verify_cleanly(tmp_path: Path) -> None:
    need_systemd_analyze()
    root = install_root(tmp_path)
    binary = root / "opt/outpost/bin/outpost"
    binary.parent.mkdir(parents=True)
    # A wrapper to this venv's console script: a working outpost at the installed path.
    binary.write_text(f'#!/bin/sh\nexec {Path(sys.prefix) / "bin" / "outpost"} "$@"\n')
    binary.chmod(0o755)
    result = verify(root)
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stdout + result.stderr

    for unit in UNITS:
        text = (root / "etc/systemd/system" / unit).read_text()
        docs = next(line for line in text.splitlines() if line.startswith("Documentation="))
        assert (root / docs.removeprefix("Documentation=file:").lstrip("/")).is_file(), docs
        env_file = next(line for line in text.splitlines() if line.startswith("EnvironmentFile="))
        installed_env = root / env_file.removeprefix("EnvironmentFile=").lstrip("-/")
        assert installed_env.is_file() and installed_env.stat().st_mode & 0o777 == 0o600
        assert "example.com" not in docs and "github.com/outpost" not in docs


def test_verify_catches_a_missing_binary(tmp_path: Path) -> None:
    """The check above can fail: without the installed outpost, verify says so."""
    need_systemd_analyze()
    result = verify(install_root(tmp_path))
    assert result.returncode != 0 and "/opt/outpost/bin/outpost" in result.stdout + result.stderr


def test_install_keeps_an_existing_environment_file(tmp_path: Path) -> None:
    root = install_root(tmp_path)
    env = root / "etc/outpost/worker.env"
    env.write_text("HTTPS_PROXY=http://proxy:3128\n")
    subprocess.run(["bash", str(INSTALL), "--units-only"], env={**os.environ, "DESTDIR": str(root)}, check=True,
                   capture_output=True, timeout=60)  # fmt: skip
    assert env.read_text() == "HTTPS_PROXY=http://proxy:3128\n"
