"""A healthy worker: every check passes (or is skipped), exit 0; output is readable and secret-free."""

from __future__ import annotations

from tests.diagnostics.conftest import CREDENTIAL, clean_env, fresh_status, run_cli


def test_healthy_worker_passes_every_check(app, pki, make_state, agent_proc):
    agent = agent_proc()
    state = make_state(app.url, ca_file=pki.ca.pem, status=fresh_status(agent.pid))
    run = run_cli("--state-dir", str(state))
    assert run.rc == 0, run.stdout + run.stderr
    doc = run.doc
    assert doc["schema"] == "outpost.diagnose/v1"
    assert doc["exit_code"] == 0
    assert doc["worker"] == {"worker_id": "w-1", "name": "web-1", "group": "linux", "url": app.url}
    statuses = {(r["id"], r["target"]): r["status"] for r in doc["results"]}
    not_passing = {k: v for k, v in statuses.items() if v != "pass"}
    # Only DNS is skipped: the server URL is an IP literal.
    assert not_passing == {
        ("dns.resolve", f"127.0.0.1:{app.port}"): "skip",
        ("proxy.connect", f"127.0.0.1:{app.port}"): "skip",
        ("proxy.paths", f"127.0.0.1:{app.port}"): "skip",
    }
    for r in doc["results"]:
        assert set(r) >= {"id", "group", "status", "finding", "remediation", "duration_ms", "evidence"}
    assert run.result("credential.accepted")["finding"] == "accepted as worker web-1 (w-1) in group linux"
    assert run.result("app.health")["finding"].startswith("Outpost 9.9.9-test answered in ")
    assert run.result("freshness.process")["finding"] == f"agent running (pid {agent.pid})"
    assert run.result("tls.handshake")["finding"].startswith("TLSv1.3, ")
    assert CREDENTIAL not in run.stdout + run.stderr


def test_table_output_has_summary_and_no_secret(app, pki, make_state, agent_proc):
    agent = agent_proc()
    state = make_state(app.url, ca_file=pki.ca.pem, status=fresh_status(agent.pid))
    run = run_cli("--state-dir", str(state), as_json=False)
    assert run.rc == 0, run.stdout + run.stderr
    assert "credential.accepted" in run.stdout
    last = run.stdout.strip().splitlines()[-1]
    assert last.startswith("OK: ") and " passed, 0 warnings, 0 failed, " in last
    assert CREDENTIAL not in run.stdout + run.stderr


def test_url_without_registration(app, pki, tmp_path):
    run = run_cli("--state-dir", str(tmp_path / "none"), "--url", app.url, "--ca-file", str(pki.ca.pem))
    assert run.rc == 0, run.stdout
    assert run.result("config.registration")["status"] == "skip"
    assert run.result("app.health")["status"] == "pass"
    assert run.result("credential.accepted")["status"] == "skip"


def test_not_registered_fails(tmp_path):
    run = run_cli("--state-dir", str(tmp_path / "none"))
    assert run.rc == 1
    r = run.result("config.state_dir")
    assert r["status"] == "fail"
    assert r["finding"] == f"no agent state at {tmp_path / 'none'}: this machine is not registered"


def test_env_state_dir_is_used(app, pki, make_state, agent_proc):
    agent = agent_proc()
    state = make_state(app.url, ca_file=pki.ca.pem, status=fresh_status(agent.pid))
    run = run_cli("--check", "config", env=clean_env(OUTPOST_STATE_DIR=str(state)))
    assert run.rc == 0
    assert run.result("config.registration")["finding"] == f"worker web-1 (w-1) in group linux, server {app.url}"
