"""Runtime environments: built by the worker on first use from a local wheelhouse, cached by content, no network."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

import pytest

from tests.helpers.api import outputs, publish, start_job, wait_job
from tests.helpers.procs import cli, wait_until

USES = "import sys\nimport opwheel\nprint(opwheel.VERSION)\nprint(sys.prefix)\n"


def make_wheel(house: Path, name: str, version: str) -> None:
    """A pure-Python wheel written by hand (no build backend, no index)."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: outpost-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{dist}/RECORD"] = "\n".join([*record, f"{dist}/RECORD,,"]) + "\n"
    with zipfile.ZipFile(house / f"{name}-{version}-py3-none-any.whl", "w") as whl:
        for path, text in files.items():
            whl.writestr(path, text)


def _job(c, runtime: str | None = None) -> tuple[dict, list[str], list[str]]:
    job_id = start_job(c, "uses", **({"runtime_environment": runtime} if runtime else {}))
    job = wait_job(c, job_id, timeout=240)
    return job, outputs(c, job_id, "Output"), outputs(c, job_id, "Verbose")


@pytest.mark.slow
def test_environment_is_built_once_cached_by_content_and_fails_with_pips_reason(
    server, make_agent, tmp_path, shared_dir
):
    house = tmp_path / "wheelhouse"
    house.mkdir()
    make_wheel(house, "opwheel", "1.0")
    make_wheel(house, "opwheel", "2.0")
    make_agent(
        server,
        name="rt",
        # A root agent's runbooks run as the runbook user, which must reach the builds (not tmp_path: 0700).
        run_args=[
            "--pip-no-index",
            "--pip-find-links",
            str(house),
            "--heartbeat-interval",
            "0.5",
            "--runtime-dir",
            str(shared_dir / "runtimes"),
            "--python",  # one the runbook user can run (this machine's default python3 is under /root, 0700)
            "/usr/bin/python3",
        ],  # fmt: skip
    )
    env = server.env()
    made = cli("runtime", "create", "env1", "--package", "opwheel==1.0", env=env)
    assert made.returncode == 0 and "created" in made.stdout, made.stderr
    with server.client() as c:
        publish(c, "uses", USES, "python3")
        assert cli("runtime", "use", "uses", "env1", env=env).returncode == 0

        first, out1, verbose1 = _job(c)
        assert first["status"] == "Completed", (first["status_reason"], first, verbose1)
        assert first["runtime_environment"] == "env1"
        assert out1[0] == "1.0"
        assert any("building" in v for v in verbose1) and any(
            "Successfully installed opwheel-1.0" in v for v in verbose1
        )

        again, out2, verbose2 = _job(c)
        assert again["status"] == "Completed" and out2 == out1
        assert any("using the cached build" in v for v in verbose2) and not any("building" in v for v in verbose2)

        requirements = tmp_path / "requirements.txt"
        requirements.write_text("# pinned\nopwheel==2.0\n")
        assert cli("runtime", "create", "env1", "--requirements", str(requirements), env=env).returncode == 0
        changed, out3, verbose3 = _job(c)
        assert changed["status"] == "Completed" and out3[0] == "2.0" and out3[1] != out1[1]
        assert any("building" in v for v in verbose3)

        # Another name with the first package set: the first build is reused, as a job-level override.
        assert c.put("/api/v1/runtimes/old", json={"packages": ["opwheel==1.0"]}).status_code == 201
        reused, out4, verbose4 = _job(c, runtime="old")
        assert reused["status"] == "Completed" and out4 == out1
        assert any("using the cached build" in v for v in verbose4)

        assert c.put("/api/v1/runtimes/broken", json={"packages": ["opwheel==9.9"]}).status_code == 201
        broken, out5, verbose5 = _job(c, runtime="broken")
        assert broken["status"] == "Failed" and out5 == []
        reason = broken["status_reason"]
        assert "runtime environment broken: pip install failed" in reason, reason
        assert "opwheel==9.9" in reason and any("No matching distribution" in v for v in verbose5)

        query = "Heartbeat | where Computer == 'rt' | top 1 by TimeGenerated | project RuntimeEnvironments_s"

        def held() -> str:
            rows = c.post("/api/v1/query", json={"query": query}).json()["rows"]
            return rows[0][0] if rows and rows[0][0] and rows[0][0].count(",") >= 1 else ""

        assert "env1:" in wait_until(held, 20, 0.3, "Heartbeat to list the environments")


def test_bad_environments_are_refused_with_a_reason(server):
    env = server.env()
    option = cli("runtime", "create", "evil", "--package", "--index-url=http://example.invalid/", env=env)
    assert option.returncode != 0 and "pip options are not allowed" in option.stderr
    url = cli("runtime", "create", "evil", "--package", "pkg @ https://example.invalid/x.whl", env=env)
    assert url.returncode != 0 and "not a package requirement such as" in url.stderr
    version = cli("runtime", "create", "evil", "--python", "2.7; rm", env=env)
    assert version.returncode != 0 and "python must be a version" in version.stderr
    with server.client() as c:
        publish(c, "sh", "echo hi\n")
        assert c.put("/api/v1/runtimes/ok", json={"packages": ["requests==2.32.3"]}).status_code == 201
        wrong = c.put("/api/v1/runbooks/sh/runtime", json={"environment": "ok"})
        assert wrong.status_code == 400 and "not a python3 runbook" in wrong.text
        missing = c.post("/api/v1/jobs", json={"runbook": "sh", "run_on": "g1", "runtime_environment": "nope"})
        assert missing.status_code in (400, 404), missing.text
    for out in (option, url, version):
        assert "Traceback" not in out.stderr
