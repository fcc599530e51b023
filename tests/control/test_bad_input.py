"""Bad input gets a clear 4xx (API) or one readable line and a non-zero exit (CLI)."""

from __future__ import annotations

import httpx
import pytest

from tests.helpers.api import publish, start_job
from tests.helpers.procs import cli


def _detail(r: httpx.Response) -> str:
    return r.json()["detail"]


def test_wrong_registration_key(server):
    r = httpx.post(f"{server.url}/api/v1/agent/register", json={"key": "opk_nope", "group": "g", "name": "n"})
    assert r.status_code == 401
    assert "registration key rejected" in _detail(r)


def test_cli_register_with_wrong_key_is_one_line(server, tmp_path):
    result = cli(
        "worker",
        "register",
        "--url",
        server.url,
        "--key",
        "opk_wrong",
        "--group",
        "g1",
        "--state-dir",
        str(tmp_path / "s"),
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: registration failed: registration key rejected: use the primary or secondary key printed by "
        "`outpost server` (HTTP 401)"
    ]
    assert "Traceback" not in result.stderr


def test_wrong_worker_credential(server):
    for token in ("garbage", "3fa85f64-5717-4562-b3fc-2c963f66afa6.opw_wrong"):
        r = httpx.post(f"{server.url}/api/v1/agent/poll", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401
        assert "worker credential" in _detail(r)


def test_worker_credential_cannot_call_admin_routes(server, make_agent):
    agent = make_agent(server, start=False)
    credential = (agent.state_dir / "credential").read_text().strip()
    r = httpx.get(f"{server.url}/api/v1/jobs", headers={"Authorization": f"Bearer {credential}"})
    assert r.status_code == 403


def test_worker_cannot_touch_a_job_it_does_not_hold(server, make_agent):
    make_agent(server, name="holder", start=False)
    other = make_agent(server, name="other", start=False)
    with server.client() as c:
        publish(c, "x", "echo x\n")
        job_id = start_job(c, "x")
    credential = (other.state_dir / "credential").read_text().strip()
    headers = {"Authorization": f"Bearer {credential}"}
    r = httpx.post(f"{server.url}/api/v1/agent/jobs/{job_id}/lease", headers=headers)
    assert r.status_code == 409 and "not held by this worker" in _detail(r)
    r = httpx.post(
        f"{server.url}/api/v1/agent/events",
        headers=headers,
        json={"batches": [{"job_id": job_id, "records": [], "status": {"status": "Completed"}}]},
    )
    (result,) = r.json()["results"]
    assert result["ack"] is None and result["error_status"] == 409 and "not held by this worker" in result["error"]
    with server.client() as c:
        assert c.get(f"/api/v1/jobs/{job_id}").json()["status"] == "New"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"runbook": "nope", "run_on": "g1"}, 404, "runbook 'nope' does not exist"),
        ({"runbook": "ok", "run_on": "nowhere"}, 404, "worker group 'nowhere' does not exist"),
        (
            {"runbook": "draft-only", "run_on": "g1"},
            400,
            "runbook draft-only has no published version; publish it first",
        ),
        (
            {"runbook": "ok", "run_on": "g1", "params": [{"name": "bad name!", "value": "1"}]},
            422,
            "params.0.name: 'bad name!' is not valid: start with a letter or '_'",
        ),
        ({"runbook": "ok", "run_on": "g1", "timeout_s": -1}, 422, "timeout_s: Input should be greater than 0"),
        ({"run_on": "g1"}, 422, "runbook: Field required"),
    ],
)
def test_job_creation_errors(server, make_agent, body, status, message):
    make_agent(server, start=False)
    with server.client() as c:
        publish(c, "ok", "echo ok\n")
        c.put("/api/v1/runbooks/draft-only/draft", json={"type": "bash", "content": "echo\n"})
        r = c.post("/api/v1/jobs", json=body)
    assert r.status_code == status
    assert message in _detail(r)


def test_malformed_json_and_oversized_body(server):
    headers = {"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"}
    r = httpx.post(f"{server.url}/api/v1/jobs", content=b'{"runbook": ', headers=headers)
    assert r.status_code == 400
    assert _detail(r).startswith("malformed JSON body")
    big = b'{"runbook": "' + b"x" * (9 * 1024 * 1024) + b'"}'
    r = httpx.post(f"{server.url}/api/v1/jobs", content=big, headers=headers)
    assert r.status_code == 413
    assert "too large" in _detail(r)


def test_unknown_runbook_type_and_bad_names(server):
    with server.client() as c:
        r = c.put("/api/v1/runbooks/x/draft", json={"type": "cobol", "content": "x"})
        assert r.status_code == 422 and "type: Input should be 'python3', 'bash' or 'pwsh'" in _detail(r)
        r = c.put("/api/v1/runbooks/bad name/draft", json={"type": "bash", "content": "x"})
        assert r.status_code == 422 and "name: 'bad name' is not valid: use 1-128 letters" in _detail(r)
        r = c.get("/api/v1/jobs/not-a-uuid")
        assert r.status_code == 422 and "a job id is a UUID" in _detail(r)
        r = c.get("/api/v1/jobs", params={"status": "Sleeping"})
        assert r.status_code == 422 and "status: Input should be 'New'" in _detail(r)


def test_missing_or_wrong_admin_token(server):
    assert httpx.get(f"{server.url}/api/v1/jobs").status_code == 401
    r = httpx.get(f"{server.url}/api/v1/jobs", headers={"Authorization": "Bearer opa_wrong"})
    assert r.status_code == 401 and "admin token rejected" in _detail(r)
    result = cli("job", "list", env={"OUTPOST_URL": server.url, "OUTPOST_TOKEN": "opa_wrong"})
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "admin token rejected" in result.stderr


def test_cli_without_url_or_token_is_a_usage_error():
    result = cli("job", "list", env={"OUTPOST_URL": "", "OUTPOST_TOKEN": ""})
    assert result.returncode == 2
    assert "no server URL" in result.stderr


def test_cli_unreachable_server_is_one_line():
    result = cli("runbook", "list", "--url", "http://127.0.0.1:9", "--token", "x", timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[0].startswith("error: cannot reach http://127.0.0.1:9")
    assert "Traceback" not in result.stderr


def test_registration_to_a_different_server_is_refused(make_server, make_agent):
    first = make_server("one")
    second = make_server("two")
    agent = make_agent(first, start=False)
    result = cli(
        "worker",
        "register",
        "--url",
        second.url,
        "--key",
        second.registration_key,
        "--group",
        "g1",
        "--state-dir",
        str(agent.state_dir),
    )
    assert result.returncode == 1
    assert f"already registered to {first.url}; deregister first or pass --force" in result.stderr
    forced = cli(
        "worker",
        "register",
        "--url",
        second.url,
        "--key",
        second.registration_key,
        "--group",
        "g1",
        "--state-dir",
        str(agent.state_dir),
        "--force",
    )
    assert forced.returncode == 0, forced.stderr


def test_state_files_are_private(server, make_agent):
    agent = make_agent(server, start=False)
    for name in ("registration.json", "credential"):
        assert (agent.state_dir / name).stat().st_mode & 0o777 == 0o600
    assert (server.data_dir / "credentials.json").stat().st_mode & 0o777 == 0o600
    # The credential is never printed by `worker status`.
    credential = (agent.state_dir / "credential").read_text().strip()
    status = cli("worker", "status", "--state-dir", str(agent.state_dir), "--json")
    assert status.returncode == 0 and credential.split(".")[1] not in status.stdout


def test_group_deletion_requires_no_workers_and_worker_removal(server, make_agent):
    agent = make_agent(server, group="doomed", name="stale", start=False)
    env = server.env()
    refused = cli("group", "delete", "doomed", env=env)
    assert refused.returncode == 1
    assert "still has 1 worker(s)" in refused.stderr
    removed = cli("worker", "remove", "stale", env=env)
    assert removed.returncode == 0, removed.stderr
    # A removed worker's credential stops working at once.
    credential = (agent.state_dir / "credential").read_text().strip()
    r = httpx.get(f"{server.url}/api/v1/agent/self", headers={"Authorization": f"Bearer {credential}"})
    assert r.status_code == 401
    assert cli("group", "delete", "doomed", env=env).returncode == 0
    assert cli("group", "delete", "doomed", env=env).returncode == 1


def test_deregister_and_regenerated_keys(server, make_agent):
    agent = make_agent(server, start=False)
    assert cli("worker", "deregister", "--state-dir", str(agent.state_dir)).returncode == 0
    assert not (agent.state_dir / "registration.json").exists()
    env = server.env()
    new = cli("keys", "regenerate", "primary", "--json", env=env)
    assert new.returncode == 0
    import json

    new_key = json.loads(new.stdout)["registration_key"]
    old = httpx.post(
        f"{server.url}/api/v1/agent/register", json={"key": server.registration_key, "group": "g1", "name": "late"}
    )
    assert old.status_code == 401
    fresh = httpx.post(f"{server.url}/api/v1/agent/register", json={"key": new_key, "group": "g1", "name": "late"})
    assert fresh.status_code == 201
