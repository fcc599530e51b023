"""Application answer, clock skew, the worker credential, registration mismatches."""

from __future__ import annotations

import os
import re

from tests.diagnostics.conftest import fresh_status, run_cli
from tests.diagnostics.servers import AppConfig


def test_server_that_is_not_outpost(make_app, pki, tmp_path):
    portal = make_app(pki.valid, AppConfig(outpost=False))
    run = run_cli(
        "--state-dir", str(tmp_path / "none"), "--url", portal.url, "--ca-file", str(pki.ca.pem), "--check", "app"
    )
    r = run.result("app.health")
    assert (run.rc, r["status"]) == (1, "fail")
    assert r["finding"] == (
        f"{portal.url}/api/v1/health answered HTTP 200 from Gateway/1.0 without the X-Outpost-Version header "
        "(text/html, '<html><title>Guest Wi-Fi</title>Please log in to continue</html>'): not Outpost, "
        "probably a proxy error or captive page"
    )


def test_post_blocked(make_app, pki, tmp_path):
    server = make_app(pki.valid, AppConfig(post_allowed=False))
    run = run_cli(
        "--state-dir", str(tmp_path / "none"), "--url", server.url, "--ca-file", str(pki.ca.pem), "--check", "app"
    )
    assert run.result("app.health")["status"] == "pass"
    r = run.result("app.post")
    assert (run.rc, r["status"]) == (1, "fail")
    assert r["finding"].startswith(f"POST: {server.url}/api/v1/health answered HTTP 405 from Gateway/1.0 without")
    assert "blocks POST" in r["remediation"]


def test_clock_skew_fails_beyond_five_minutes(make_app, pki, tmp_path):
    server = make_app(pki.valid, AppConfig(date_offset_s=600))
    run = run_cli(
        "--state-dir", str(tmp_path / "none"), "--url", server.url, "--ca-file", str(pki.ca.pem), "--check", "clock"
    )
    r = run.result("clock.skew")
    assert (run.rc, r["status"]) == (1, "fail")
    assert re.fullmatch(r"this machine's clock is (599|600|601) s behind the server's \(limit 300 s\)", r["finding"])
    assert "timedatectl" in r["remediation"]


def test_clock_skew_warns_beyond_a_minute(make_app, pki, tmp_path):
    server = make_app(pki.valid, AppConfig(date_offset_s=-120))
    run = run_cli(
        "--state-dir", str(tmp_path / "none"), "--url", server.url, "--ca-file", str(pki.ca.pem), "--check", "clock"
    )
    r = run.result("clock.skew")
    assert (run.rc, r["status"]) == (0, "warn")
    assert re.fullmatch(
        r"this machine's clock is (119|120|121) s ahead of the server's \(warn above 60 s\)", r["finding"]
    )


def test_rejected_credential(app, pki, make_state, agent_proc):
    state = make_state(
        app.url, ca_file=pki.ca.pem, credential="revoked-credential", status=fresh_status(agent_proc().pid)
    )
    run = run_cli("--state-dir", str(state), "--check", "credential")
    r = run.result("credential.accepted")
    assert (run.rc, r["status"]) == (1, "fail")
    assert r["finding"] == "the server rejected this worker's credential (HTTP 401)"
    assert f"outpost worker register --force --url {app.url}" in r["remediation"]
    assert "revoked-credential" not in run.stdout + run.stderr


def test_registered_to_a_different_server(app, pki, make_state, agent_proc):
    state = make_state(
        "https://outpost.old.example:8443",
        ca_file=pki.ca.pem,
        credential="old-server-credential",
        status=fresh_status(agent_proc().pid),
    )
    run = run_cli("--state-dir", str(state), "--url", app.url, "--ca-file", str(pki.ca.pem), "--check", "config")
    r = run.result("config.registration")
    assert (run.rc, r["status"]) == (0, "warn")
    assert r["finding"] == (
        f"worker web-1 (w-1) in group linux is registered to https://outpost.old.example:8443, not to {app.url} "
        f"(checking {app.url})"
    )
    run = run_cli(
        "--state-dir", str(state), "--url", app.url, "--ca-file", str(pki.ca.pem), "--check", "credential.accepted"
    )
    r = run.result("credential.accepted")
    assert (run.rc, r["status"]) == (1, "fail")
    assert r["finding"] == (
        "the server rejected this worker's credential (HTTP 401); this worker is registered to "
        "https://outpost.old.example:8443, not to this server"
    )


def test_credential_for_another_worker(make_app, pki, make_state, agent_proc):
    server = make_app(pki.valid, AppConfig(worker={"worker_id": "w-9", "name": "db-9", "group": "linux"}))
    state = make_state(server.url, ca_file=pki.ca.pem, status=fresh_status(agent_proc().pid))
    run = run_cli("--state-dir", str(state), "--check", "credential.accepted")
    r = run.result("credential.accepted")
    assert (run.rc, r["status"]) == (1, "fail")
    assert r["finding"] == "the server knows this credential as worker w-9, but the registration says w-1"


def test_credential_readable_by_others(app, pki, make_state, agent_proc):
    state = make_state(app.url, ca_file=pki.ca.pem, status=fresh_status(agent_proc().pid))
    os.chmod(state / "credential", 0o644)
    run = run_cli("--state-dir", str(state), "--check", "credential.file")
    r = run.result("credential.file")
    assert (run.rc, r["status"]) == (1, "fail")
    assert r["finding"] == f"{state / 'credential'} is readable by other users (mode 0644)"
    assert r["remediation"].startswith(f"chmod 600 {state / 'credential'}")


def test_missing_credential(app, pki, make_state):
    state = make_state(app.url, ca_file=pki.ca.pem)
    (state / "credential").unlink()
    run = run_cli("--state-dir", str(state), "--check", "credential")
    r = run.result("credential.file")
    assert (run.rc, r["status"]) == (1, "fail")
    assert r["finding"] == f"the worker credential {state / 'credential'} is missing"
    assert run.result("credential.accepted")["status"] == "skip"


def test_registered_ca_file_missing(app, pki, make_state, tmp_path):
    state = make_state(app.url, ca_file=tmp_path / "gone.pem")
    run = run_cli("--state-dir", str(state), "--check", "config.registration")
    r = run.result("config.registration")
    assert (run.rc, r["status"]) == (1, "fail")
    assert r["finding"] == f"the registered CA file {tmp_path / 'gone.pem'} is missing"
